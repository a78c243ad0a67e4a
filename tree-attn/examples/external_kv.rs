//! Tree decode on a KV cache someone else allocated: the embedding contract end to end.
//!
//! An "engine" (here: plain `cudarc`, or a host `Vec` on the CPU) owns the paged KV cache, the
//! queries, the outputs and — on CUDA — the stream. It hands us raw CSR block tables of its own
//! (two sequences sharing a 3-page prompt); we recover the sharing, plan once, and run one layer
//! straight on its memory, on its stream, writing its output buffer in place. The result is
//! checked against a plain softmax over each sequence's gathered pages.
//!
//! ```sh
//! cargo run -p tree-attn --example external_kv                     # CPU
//! scripts/cuda-emu.sh cargo run -p tree-attn --example external_kv -- cuda   # emulated CUDA
//! ```

use tree_attn::{CsrForest, PlanKind, TreeDecoder};
use treepo_kernels::ops::PagedKvLayout;
use treepo_kernels::{Buffer, Device};

const PAGE: usize = 4;
const HQ: usize = 4;
const HKV: usize = 2;
const D: usize = 64;
const PAGES: usize = 8;

/// The engine's block tables: prompt pages 5, 2, 7 shared; tails 0 (3 tokens) and 4, 1 (6).
const INDPTR: [i32; 3] = [0, 4, 9];
const INDICES: [i32; 9] = [5, 2, 7, 0, 5, 2, 7, 4, 1];
const LAST: [i32; 2] = [3, 2];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let want_cuda = std::env::args().nth(1).as_deref() == Some("cuda");
    let layout = PagedKvLayout::nhd(1, PAGES, HKV, PAGE, D);
    let kv: Vec<f32> =
        (0..layout.required_len()?).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let q: Vec<f32> = (0..2 * HQ * D).map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0).collect();
    let forest = CsrForest::from_csr(PAGE as u32, &INDPTR, &INDICES, &LAST, None)?;
    let scale = 1.0 / (D as f32).sqrt();
    let out = if want_cuda {
        on_cuda(&forest, &layout, &q, &kv, scale)?
    } else {
        let dev = Device::cpu();
        let mut dec = TreeDecoder::new();
        dec.plan(&dev, &forest.view(), forest.leaves(), PlanKind::Tree, HQ, HKV, D, PAGES)?;
        let mut out = vec![f32::NAN; 2 * HQ * D]; // the engine's output buffer
        {
            let (qb, kvb) = (Buffer::from_host(&q), Buffer::from_host(&kv));
            let mut ob = Buffer::from_host_mut(&mut out);
            dec.run(&dev, qb.view(), kvb.view(), &layout, 0, scale, ob.view_mut(), None)?;
        }
        let p = dec.host_plan().ok_or("no plan")?;
        let naive: usize = (0..2).map(seq_len).sum();
        println!(
            "cpu: {} work items read {} positions (per-sequence decode reads {naive})",
            p.work().len(),
            p.tokens_read()
        );
        out
    };
    let err = max_error(&out, &reference(&layout, &q, &kv, scale));
    println!("max |tree decode - reference| = {err:.3e}");
    if err > 1e-4 {
        return Err(format!("tree decode differs from the reference by {err}").into());
    }
    Ok(())
}

#[cfg(feature = "cuda")]
fn on_cuda(
    forest: &CsrForest,
    layout: &PagedKvLayout,
    q: &[f32],
    kv: &[f32],
    scale: f32,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    use cudarc::driver::{CudaContext, DevicePtr};
    // The engine's context, stream and memory, made without us.
    let ctx = CudaContext::new(0)?;
    let stream = ctx.new_stream()?;
    let (dq, dkv) = (stream.clone_htod(q)?, stream.clone_htod(kv)?);
    let dout = stream.clone_htod(&vec![f32::NAN; q.len()])?;
    let out = {
        let (pq, _g1) = dq.device_ptr(&stream);
        let (pkv, _g2) = dkv.device_ptr(&stream);
        let (po, _g3) = dout.device_ptr(&stream);
        // SAFETY: the stream and the three allocations outlive `dev` and the buffers (dropped at
        // the end of this block); all work is ordered on that stream.
        let dev = unsafe { Device::cuda(0)?.with_cuda_stream(stream.cu_stream().cast()) }?;
        // SAFETY: as above; each pointer holds exactly the elements given.
        let (qb, kvb, mut ob) = unsafe {
            (
                Buffer::<f32>::from_cuda_ptr(&dev, pq, q.len())?,
                Buffer::<f32>::from_cuda_ptr(&dev, pkv, kv.len())?,
                Buffer::<f32>::from_cuda_ptr(&dev, po, q.len())?,
            )
        };
        let mut dec = TreeDecoder::new();
        dec.plan(&dev, &forest.view(), forest.leaves(), PlanKind::Tree, HQ, HKV, D, PAGES)?;
        dec.run(&dev, qb.view(), kvb.view(), layout, 0, scale, ob.view_mut(), None)?;
        println!("{}: ran on the caller's stream and memory", dev.description());
        stream.synchronize()?;
        stream.clone_dtoh(&dout)?
    };
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
fn on_cuda(
    _: &CsrForest,
    _: &PagedKvLayout,
    _: &[f32],
    _: &[f32],
    _: f32,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    Err("built without the cuda feature".into())
}

fn seq_len(s: usize) -> usize {
    (INDPTR[s + 1] - INDPTR[s] - 1) as usize * PAGE + LAST[s] as usize
}

/// Softmax attention of each sequence's last position over its gathered pages, in f64.
fn reference(l: &PagedKvLayout, q: &[f32], kv: &[f32], scale: f32) -> Vec<f64> {
    let mut out = Vec::new();
    for s in 0..2 {
        let pages = &INDICES[INDPTR[s] as usize..INDPTR[s + 1] as usize];
        let len = seq_len(s);
        for h in 0..HQ {
            let kh = h / (HQ / HKV);
            let qv = &q[(s * HQ + h) * D..][..D];
            let at = |t: usize, which: usize, i: usize| {
                let (page, slot) = (pages[t / PAGE] as usize, t % PAGE);
                kv[page * l.stride_page
                    + which * l.stride_kv
                    + kh * l.stride_head
                    + slot * l.stride_token
                    + i] as f64
            };
            let logits: Vec<f64> = (0..len)
                .map(|t| (0..D).map(|i| qv[i] as f64 * at(t, 0, i)).sum::<f64>() * scale as f64)
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = logits.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = w.iter().sum();
            out.extend((0..D).map(|i| (0..len).map(|t| w[t] * at(t, 1, i)).sum::<f64>() / z));
        }
    }
    out
}

fn max_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max)
}
