//! Conformance of `ops::paged_kv_append` (and `_strided`): sequences own shuffled pool pages,
//! spare pages hold a sentinel, last pages are partial; every layer is appended separately,
//! first a prefill batch of interleaved tokens, then decode steps out of a fused QKV buffer.
//! The check is exact: each sequence read back through its page list equals what was appended,
//! and the whole buffer equals a host model (every other element kept its old bits).

// Loops over (layer, kv, head, row) coordinates index several arrays at once, like the layout.
#![allow(clippy::needless_range_loop)]

use crate::cache_common::{Sample, assert_bits, coord, runs};
use treepo_kernels::ops::{self, PagedKvLayout};
use treepo_kernels::testing::Rng;
use treepo_kernels::{BackendKind, Buffer, Device, Indices, KernelError, bf16, f16, per_backend};

/// How the cache is laid out.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Hnd,
    Nhd,
    /// Per layer `[2, num_pages, page_size, H, D]`: K and V in separate halves (vLLM v1).
    SplitKv,
    /// HND with odd padding in every stride: forces the narrowest copy words.
    Padded,
}

fn layout_of(
    kind: Kind,
    layers: usize,
    pages: usize,
    h: usize,
    p: usize,
    d: usize,
) -> PagedKvLayout {
    match kind {
        Kind::Hnd => PagedKvLayout::hnd(layers, pages, h, p, d),
        Kind::Nhd => PagedKvLayout::nhd(layers, pages, h, p, d),
        Kind::SplitKv => {
            let stride_head = d;
            let stride_token = h * d;
            let stride_page = p * stride_token;
            let stride_kv = pages * stride_page;
            PagedKvLayout {
                num_layers: layers,
                num_pages: pages,
                num_kv_heads: h,
                page_size: p,
                head_dim: d,
                stride_layer: 2 * stride_kv,
                stride_page,
                stride_kv,
                stride_head,
                stride_token,
            }
        }
        Kind::Padded => {
            let stride_token = d + 1;
            let stride_head = p * stride_token + 3;
            let stride_kv = h * stride_head;
            let stride_page = 2 * stride_kv + 5;
            PagedKvLayout {
                num_layers: layers,
                num_pages: pages,
                num_kv_heads: h,
                page_size: p,
                head_dim: d,
                stride_layer: pages * stride_page + 7,
                stride_page,
                stride_kv,
                stride_head,
                stride_token,
            }
        }
    }
}

/// One test configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    kind: Kind,
    layers: usize,
    heads: usize,
    head_dim: usize,
    page_size: usize,
    seqs: usize,
    /// Elements before the cache view inside its buffer (the view's offset).
    front: usize,
}

const CASES: &[Case] = &[
    Case { kind: Kind::Hnd, layers: 2, heads: 1, head_dim: 64, page_size: 16, seqs: 4, front: 0 },
    Case { kind: Kind::Nhd, layers: 3, heads: 2, head_dim: 40, page_size: 8, seqs: 5, front: 8 },
    Case { kind: Kind::Hnd, layers: 2, heads: 8, head_dim: 128, page_size: 16, seqs: 3, front: 0 },
    Case {
        kind: Kind::SplitKv,
        layers: 2,
        heads: 8,
        head_dim: 40,
        page_size: 4,
        seqs: 4,
        front: 0,
    },
    Case { kind: Kind::Padded, layers: 2, heads: 2, head_dim: 33, page_size: 8, seqs: 3, front: 3 },
    Case { kind: Kind::Nhd, layers: 1, heads: 2, head_dim: 128, page_size: 1, seqs: 3, front: 0 },
    Case { kind: Kind::Hnd, layers: 2, heads: 2, head_dim: 64, page_size: 32, seqs: 2, front: 5 },
];

/// Spare pages nobody owns.
const SPARE: usize = 3;

fn appends(dev: &Device) {
    appends_t::<f32>(dev);
    appends_t::<f16>(dev);
    appends_t::<bf16>(dev);
    appends_t::<i32>(dev);
}

fn appends_t<T: Sample>(dev: &Device) {
    let append_on = |cache: &mut Buffer<T>, l: &PagedKvLayout| {
        let src = dev.full(8, T::sample(&mut Rng::new(2))).unwrap();
        let slots = Indices::upload(dev, &[5], l.num_slots()).unwrap();
        ops::paged_kv_append(dev, cache, l, 0, &src, &src, &slots)
    };
    if !runs::<T>(dev, "paged_kv_append", append_on) {
        return;
    }
    let mut rng = Rng::fresh(&format!("paged_kv_append {}", T::DTYPE));
    for &case in CASES {
        run_case::<T>(dev, case, &mut rng);
    }
}

fn run_case<T: Sample>(dev: &Device, c: Case, rng: &mut Rng) {
    let (h, d, p) = (c.heads, c.head_dim, c.page_size);
    let row = h * d;
    // Sequence lengths: mostly partial last pages, one exact multiple of the page size.
    let lens: Vec<usize> =
        (0..c.seqs).map(|s| if s == 1 { 2 * p } else { 1 + rng.below(3 * p) }).collect();
    let pages_of = |len: usize| len.div_ceil(p);
    let used: usize = lens.iter().map(|&n| pages_of(n)).sum();
    let num_pages = used + SPARE;
    let l = layout_of(c.kind, c.layers, num_pages, h, p, d);
    l.validate(l.required_len().unwrap()).unwrap();
    // A shuffled page table: a random permutation of the pool, the rest spare.
    let perm = rng.permutation(num_pages);
    let mut next = 0;
    let tables: Vec<Vec<usize>> = lens
        .iter()
        .map(|&n| {
            let t = perm[next..next + pages_of(n)].to_vec();
            next += pages_of(n);
            t
        })
        .collect();
    let spare = &perm[next..];
    // The values each token of each sequence will hold: [layer][kv][H*D].
    let hist: Vec<Vec<Vec<[Vec<T>; 2]>>> = lens
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| {
                    (0..c.layers)
                        .map(|_| {
                            [
                                (0..row).map(|_| T::sample(rng)).collect(),
                                (0..row).map(|_| T::sample(rng)).collect(),
                            ]
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    // Initial buffer: old random contents; spare pages and the margins hold the sentinel.
    let need = l.required_len().unwrap();
    let total = c.front + need + 4;
    let mut host: Vec<T> = (0..total).map(|_| T::sample(rng)).collect();
    host[..c.front].fill(T::POISON);
    host[c.front + need..].fill(T::POISON);
    for &page in spare {
        for layer in 0..c.layers {
            for kv in 0..2 {
                for hh in 0..h {
                    for t in 0..p {
                        let o = c.front + l.offset(layer, page, kv, hh, t, 0);
                        host[o..o + d].fill(T::POISON);
                    }
                }
            }
        }
    }
    let mut buf = dev.upload(&host).unwrap();
    let mut model = host.clone();
    let slot = |s: usize, t: usize| (tables[s][t / p] * p + t % p) as i32;
    let put = |model: &mut Vec<T>, s: usize, t: usize| {
        for layer in 0..c.layers {
            for kv in 0..2 {
                for hh in 0..h {
                    let o = c.front + l.offset(layer, tables[s][t / p], kv, hh, t % p, 0);
                    model[o..o + d].copy_from_slice(&hist[s][t][layer][kv][hh * d..(hh + 1) * d]);
                }
            }
        }
    };
    // Prefill: all but the last 0..=2 tokens of every sequence, interleaved in random order.
    let decode: Vec<usize> = lens.iter().map(|&n| rng.below(3).min(n - 1)).collect();
    let mut batch: Vec<(usize, usize)> =
        (0..c.seqs).flat_map(|s| (0..lens[s] - decode[s]).map(move |t| (s, t))).collect();
    let order = rng.permutation(batch.len());
    batch = order.into_iter().map(|i| batch[i]).collect();
    let slots: Vec<i32> = batch.iter().map(|&(s, t)| slot(s, t)).collect();
    let ix = Indices::upload(dev, &slots, l.num_slots()).unwrap();
    for layer in 0..c.layers {
        let kn: Vec<T> = batch.iter().flat_map(|&(s, t)| hist[s][t][layer][0].clone()).collect();
        let vn: Vec<T> = batch.iter().flat_map(|&(s, t)| hist[s][t][layer][1].clone()).collect();
        let (kb, vb) = (dev.upload(&kn).unwrap(), dev.upload(&vn).unwrap());
        let view = buf.slice_mut(c.front..c.front + need).unwrap();
        ops::paged_kv_append(dev, view, &l, layer, &kb, &vb, &ix).unwrap();
    }
    for &(s, t) in &batch {
        put(&mut model, s, t);
    }
    // Decode steps: one token per sequence that has one left, K and V read straight out of a
    // fused QKV projection `[N, (H_q + 2 H_kv) * D]` with H_q = 2 H_kv.
    let hq = 2 * h;
    let stride = (hq + 2 * h) * d;
    for step in 0..2 {
        let batch: Vec<(usize, usize)> = (0..c.seqs)
            .filter(|&s| step < decode[s])
            .map(|s| (s, lens[s] - decode[s] + step))
            .collect();
        if batch.is_empty() {
            continue;
        }
        let slots: Vec<i32> = batch.iter().map(|&(s, t)| slot(s, t)).collect();
        let ix = Indices::upload(dev, &slots, l.num_slots()).unwrap();
        for layer in 0..c.layers {
            let mut qkv: Vec<T> = (0..batch.len() * stride).map(|_| T::sample(rng)).collect();
            for (i, &(s, t)) in batch.iter().enumerate() {
                let base = i * stride + hq * d;
                qkv[base..base + row].copy_from_slice(&hist[s][t][layer][0]);
                qkv[base + row..base + 2 * row].copy_from_slice(&hist[s][t][layer][1]);
            }
            let qb = dev.upload(&qkv).unwrap();
            let n_el = qkv.len();
            let kv_view = qb.slice(hq * d..n_el).unwrap();
            let v_view = qb.slice((hq + h) * d..n_el).unwrap();
            let view = buf.slice_mut(c.front..c.front + need).unwrap();
            ops::paged_kv_append_strided(dev, view, &l, layer, kv_view, v_view, &ix, stride)
                .unwrap();
        }
        for &(s, t) in &batch {
            put(&mut model, s, t);
        }
    }
    let got = dev.download(&buf).unwrap();
    let what = format!("{} {:?} {}", dev.description(), c, T::DTYPE);
    // Each sequence read back through its page table equals what was appended.
    for (s, &n) in lens.iter().enumerate() {
        for t in 0..n {
            for layer in 0..c.layers {
                for kv in 0..2 {
                    for hh in 0..h {
                        let o = c.front + l.offset(layer, tables[s][t / p], kv, hh, t % p, 0);
                        assert_bits(
                            &format!("{what}: seq {s} token {t} layer {layer} kv {kv} head {hh}"),
                            &got[o..o + d],
                            &hist[s][t][layer][kv][hh * d..(hh + 1) * d],
                            |i| format!("d {i}"),
                        );
                    }
                }
            }
        }
    }
    // Spare pages still hold the sentinel.
    for &page in spare {
        let o = c.front + l.offset(0, page, 0, 0, 0, 0);
        assert_bits(&format!("{what}: spare page {page}"), &got[o..o + d], &host[o..o + d], |i| {
            format!("d {i}")
        });
    }
    // Nothing else changed.
    assert_bits(&what, &got, &model, |i| coord(&l, c.front, i));
    eprintln!("{what}: {} sequences, {num_pages} pages ({SPARE} spare) exact", c.seqs);
}

/// An empty batch is a no-op.
fn empty_batch_is_a_noop(dev: &Device) {
    let l = PagedKvLayout::hnd(2, 4, 2, 8, 16);
    let mut rng = Rng::fresh("paged_kv_append empty");
    let host: Vec<f32> = (0..l.required_len().unwrap()).map(|_| f32::sample(&mut rng)).collect();
    let mut cache = dev.upload(&host).unwrap();
    let none = dev.zeros::<f32>(0).unwrap();
    let ix = Indices::upload(dev, &[], l.num_slots()).unwrap();
    ops::paged_kv_append(dev, &mut cache, &l, 1, &none, &none, &ix).unwrap();
    assert_bits("empty append", &dev.download(&cache).unwrap(), &host, |i| coord(&l, 0, i));
}

fn rejects_bad_input(dev: &Device) {
    let l = PagedKvLayout::nhd(2, 4, 2, 8, 16);
    let need = l.required_len().unwrap();
    let mut rng = Rng::fresh("paged_kv_append bad input");
    let vals: Vec<f32> = (0..need).map(|_| f32::sample(&mut rng)).collect();
    let mut cache = dev.upload(&vals).unwrap();
    let src = dev.upload(&vals[..2 * 32]).unwrap();
    let ix = Indices::upload(dev, &[3, 31], l.num_slots()).unwrap();
    let msg = |r: treepo_kernels::Result<()>| r.unwrap_err().to_string();
    // A slot bound beyond the pool.
    let big = Indices::upload(dev, &[3, 31], l.num_slots() + 1).unwrap();
    let e = msg(ops::paged_kv_append(dev, &mut cache, &l, 0, &src, &src, &big));
    assert!(e.contains("`slots` values may reach 32 but only 32 exist"), "{e}");
    // A layout that overflows the buffer.
    let mut short = dev.upload(&vals[..need - 1]).unwrap();
    let e = msg(ops::paged_kv_append(dev, &mut short, &l, 0, &src, &src, &ix));
    assert!(
        e.contains(&format!(
            "the layout reaches element {} but the buffer holds {}",
            need - 1,
            need - 1
        )),
        "{e}"
    );
    // A page size that is not a power of two.
    let bad = PagedKvLayout::nhd(2, 4, 2, 6, 16);
    let e = msg(ops::paged_kv_append(dev, &mut cache, &bad, 0, &src, &src, &ix));
    assert!(e.contains("page_size = 6 must be a power of two"), "{e}");
    // Strides under which two coordinates share an element.
    let alias = PagedKvLayout { stride_token: 8, ..l };
    let e = msg(ops::paged_kv_append(dev, &mut cache, &alias, 0, &src, &src, &ix));
    assert!(e.contains("two coordinates would share an element"), "{e}");
    // Layer out of range, short sources, a token stride below the row.
    let e = msg(ops::paged_kv_append(dev, &mut cache, &l, 2, &src, &src, &ix));
    assert!(e.contains("layer 2 is outside the layout's 2 layers"), "{e}");
    let e = msg(ops::paged_kv_append(dev, &mut cache, &l, 0, src.slice(0..63).unwrap(), &src, &ix));
    assert!(e.contains("`k_new` holds 63 elements but the shape needs 64"), "{e}");
    let e = msg(ops::paged_kv_append_strided(dev, &mut cache, &l, 0, &src, &src, &ix, 31));
    assert!(e.contains("kv_token_stride = 31 is smaller than num_kv_heads*head_dim = 32"), "{e}");
    let e = msg(ops::paged_kv_append_strided(dev, &mut cache, &l, 0, &src, &src, &ix, 40));
    assert!(e.contains("`k_new` holds 64 elements but the shape needs 72"), "{e}");
    // A dtype the backend lacks: bf16 on wgpu, i32 on CUDA (the CPU copies any element).
    let unsupported = match dev.kind() {
        BackendKind::Cpu => None,
        BackendKind::Wgpu => {
            let mut c = dev.zeros::<bf16>(need).unwrap();
            let s = dev.zeros::<bf16>(64).unwrap();
            Some(ops::paged_kv_append(dev, &mut c, &l, 0, &s, &s, &ix).unwrap_err())
        }
        BackendKind::Cuda => {
            let mut c = dev.zeros::<i32>(need).unwrap();
            let s = dev.zeros::<i32>(64).unwrap();
            Some(ops::paged_kv_append(dev, &mut c, &l, 0, &s, &s, &ix).unwrap_err())
        }
    };
    if let Some(err) = unsupported {
        assert!(matches!(err, KernelError::UnsupportedDtype { .. }), "{err}");
        assert!(err.to_string().contains("is not supported on the"), "{err}");
    }
    // Slots on another backend.
    if dev.kind() != BackendKind::Cpu {
        let host_ix = Indices::upload(&Device::cpu(), &[3, 31], l.num_slots()).unwrap();
        let err = ops::paged_kv_append(dev, &mut cache, &l, 0, &src, &src, &host_ix).unwrap_err();
        assert!(matches!(err, KernelError::WrongDevice { name: "slots", .. }), "{err}");
    }
    // Nothing was written by any rejected call.
    assert_bits("rejected calls", &dev.download(&cache).unwrap(), &vals, |i| coord(&l, 0, i));
}

per_backend!(appends, empty_batch_is_a_noop, rejects_bad_input);
