//! Conformance of `ops::paged_decode` (the naive baseline) against an f64 reference, on every
//! backend: shuffled page tables with spare pages, partial last pages, GQA groups 1/4/8,
//! head_dim 64 and 128, HND and NHD, a non-zero layer inside an offset view, segment appends
//! (several query rows per sequence, causal among themselves) and every dtype the backend has.

use crate::decode_common::{
    Cache, PagePool, attend_ref, download, dtypes, poisoned, positions, round_to, tols, upload,
};
use treepo_kernels::ops::{DecodeParams, PageTable, PageTableHost, paged_decode};
use treepo_kernels::testing::{Rng, assert_close};
use treepo_kernels::{BackendKind, Device, FloatElement, per_backend};

/// (sequence length, query rows): one token; a partial last page; a segment append; a tile of
/// more than 16 query vectors even without GQA (tensor-core path on CUDA); a full prefill.
const SEQS: &[(usize, usize)] = &[(1, 1), (37, 1), (130, 3), (64, 17), (200, 1), (16, 16)];

#[allow(clippy::too_many_arguments)]
fn check<T: FloatElement>(
    dev: &Device,
    rng: &mut Rng,
    hq: usize,
    hkv: usize,
    d: usize,
    ps: usize,
    nhd: bool,
    q_scale: f64,
) {
    let dtype = T::DTYPE;
    let need: usize = SEQS.iter().map(|(l, _)| l.div_ceil(ps)).sum();
    let num_pages = need + 7;
    let cache = Cache::random(rng, 2, num_pages, hkv, ps, d, nhd, dtype);
    let layer = 1;
    let mut pool = PagePool::new(rng, num_pages);
    let (mut indptr, mut indices, mut last, mut q_indptr) = (vec![0], vec![], vec![], vec![0]);
    let mut seq_pages = Vec::new();
    for &(len, rows) in SEQS {
        let pages = pool.take(len.div_ceil(ps));
        indices.extend_from_slice(&pages);
        indptr.push(indices.len() as i32);
        last.push((len - (len.div_ceil(ps) - 1) * ps) as i32);
        q_indptr.push(q_indptr.last().unwrap() + rows as i32);
        seq_pages.push(pages);
    }
    let rows = *q_indptr.last().unwrap() as usize;
    let q: Vec<f32> =
        rng.normals(rows * hq * d, q_scale).into_iter().map(|x| round_to(dtype, x)).collect();
    let host = PageTableHost {
        page_size: ps,
        indptr: &indptr,
        indices: &indices,
        last_page_len: &last,
        q_indptr: &q_indptr,
    };
    let table = PageTable::upload(dev, &host, num_pages).unwrap();
    // The cache sits 8 elements into its buffer (a view with an offset, 16-byte aligned).
    let mut padded = vec![0f32; 8];
    padded.extend_from_slice(&cache.data);
    let kv_buf = upload::<T>(dev, &padded);
    let kv = kv_buf.slice(8..padded.len()).unwrap();
    let qb = upload::<T>(dev, &q);
    let mut out = poisoned::<T>(dev, rows * hq * d);
    let mut lse = poisoned::<f32>(dev, rows * hq);
    let scale = 1.3 / (d as f32).sqrt();
    let params = DecodeParams { num_qo_heads: hq, layer, sm_scale: scale };
    paged_decode(dev, &qb, kv, &cache.layout, &table, &mut out, Some(lse.view_mut()), &params)
        .unwrap();
    let (mut want_o, mut want_l) = (Vec::new(), Vec::new());
    let mut r = 0;
    for (s, &(len, nrows)) in SEQS.iter().enumerate() {
        let keys = positions(&seq_pages[s], ps, len);
        for i in 0..nrows {
            let pos = len - nrows + i;
            for h in 0..hq {
                let qv = &q[(r * hq + h) * d..][..d];
                let (o, l) =
                    attend_ref(&cache, layer, h / (hq / hkv), qv, &keys[..=pos], scale as f64);
                want_o.extend(o);
                want_l.push(l);
            }
            r += 1;
        }
    }
    let what = format!("paged_decode {dtype} hq={hq} hkv={hkv} d={d} ps={ps} nhd={nhd}");
    let (to, tl) = tols(dtype);
    let eo = assert_close(&format!("{what} out"), &download(dev, &out), &want_o, to);
    let el = assert_close(&format!("{what} lse"), &dev.download(&lse).unwrap(), &want_l, tl);
    eprintln!("{what}: max err out {eo:e} lse {el:e}");
    // Without lse the outputs are the same.
    let mut out2 = poisoned::<T>(dev, rows * hq * d);
    paged_decode(dev, &qb, kv, &cache.layout, &table, &mut out2, None, &params).unwrap();
    assert_close(&format!("{what} out (no lse)"), &download(dev, &out2), &want_o, to);
}

fn matches_reference(dev: &Device) {
    let mut rng = Rng::fresh("paged_decode");
    let configs =
        [(4, 4, 64, 16, false), (8, 2, 128, 16, true), (16, 2, 64, 4, false), (8, 2, 64, 8, true)];
    for dtype in dtypes(dev) {
        for &(hq, hkv, d, ps, nhd) in &configs {
            with_dtype!(dtype, check(dev, &mut rng, hq, hkv, d, ps, nhd, 1.0));
        }
        // Large logits: a peaked softmax.
        with_dtype!(dtype, check(dev, &mut rng, 8, 1, 128, 16, false, 4.0));
    }
}

fn rejects_bad_input(dev: &Device) {
    let ps = 4;
    let good = |indices: &[i32], last: &[i32], indptr: &[i32], q_indptr: &[i32]| {
        let host = PageTableHost { page_size: ps, indptr, indices, last_page_len: last, q_indptr };
        PageTable::upload(dev, &host, 9).map(|_| ()).unwrap_err().to_string()
    };
    let e = good(&[0, 9], &[4], &[0, 2], &[0, 1]);
    assert!(e.contains("`indices[1]` = 9 is outside [0, 9)"), "{e}");
    let e = good(&[0, 1, 2], &[4, 4], &[0, 2, 1], &[0, 1, 2]);
    assert!(e.contains("`indptr` is not monotone"), "{e}");
    let e = good(&[0, 1], &[0], &[0, 2], &[0, 1]);
    assert!(e.contains("`last_page_len[0]` = 0 is outside [1, page_size = 4]"), "{e}");
    let e = good(&[0, 1], &[5], &[0, 2], &[0, 1]);
    assert!(e.contains("is outside [1, page_size = 4]"), "{e}");
    let e = good(&[0], &[2], &[0, 1], &[0, 3]);
    assert!(e.contains("sequence 0 has 3 query rows but only 2 tokens"), "{e}");
    let e = good(&[0], &[2], &[1, 1], &[0, 1]);
    assert!(e.contains("`indptr[0]` = 1 must be 0"), "{e}");
    let e = good(&[], &[2], &[0, 0], &[0, 1]);
    assert!(e.contains("sequence 0 has no page"), "{e}");

    let mut rng = Rng::fresh("paged_decode errors");
    let d = 64;
    let cache = Cache::random(&mut rng, 1, 4, 4, ps, d, false, treepo_kernels::DType::F32);
    let host = PageTableHost {
        page_size: ps,
        indptr: &[0, 2],
        indices: &[3, 1],
        last_page_len: &[2],
        q_indptr: &[0, 1],
    };
    let table = PageTable::upload(dev, &host, 4).unwrap();
    let kv = dev.upload(&cache.data).unwrap();
    let q = dev.upload(&rng.normals(8 * d, 1.0)).unwrap();
    let mut out = dev.zeros::<f32>(8 * d).unwrap();
    let call = |hq: usize,
                layer: usize,
                layout: &treepo_kernels::ops::PagedKvLayout,
                out: &mut treepo_kernels::Buffer<f32>| {
        let p = DecodeParams { num_qo_heads: hq, layer, sm_scale: 0.1 };
        paged_decode(dev, &q, &kv, layout, &table, out, None, &p).unwrap_err().to_string()
    };
    let e = call(6, 0, &cache.layout, &mut out);
    assert!(e.contains("num_qo_heads = 6 is not a positive multiple of num_kv_heads = 4"), "{e}");
    let e = call(4, 1, &cache.layout, &mut out);
    assert!(e.contains("layer 1 but the cache holds 1 layers"), "{e}");
    let mut small = cache.layout;
    small.num_pages = 3;
    let e = call(4, 0, &small, &mut out);
    assert!(e.contains("page ids may reach 3 but the cache holds 3 pages"), "{e}");
    let mut other_ps = treepo_kernels::ops::PagedKvLayout::hnd(1, 2, 4, 8, d);
    other_ps.num_pages = 2;
    let e = call(4, 0, &other_ps, &mut out);
    assert!(e.contains("page_size 4 differs from the cache's 8"), "{e}");
    let mut short = dev.zeros::<f32>(4 * d - 1).unwrap();
    let e = call(4, 0, &cache.layout, &mut short);
    assert!(e.contains("`out` holds 255 elements but the shape needs 256"), "{e}");
    // head_dim 96: the CPU reference takes any size, the GPU kernels 64 and 128.
    let c96 = Cache::random(&mut rng, 1, 4, 4, ps, 96, false, treepo_kernels::DType::F32);
    let kv96 = dev.upload(&c96.data).unwrap();
    let q96 = dev.upload(&rng.normals(4 * 96, 1.0)).unwrap();
    let mut o96 = dev.zeros::<f32>(4 * 96).unwrap();
    let p = DecodeParams { num_qo_heads: 4, layer: 0, sm_scale: 0.1 };
    let r = paged_decode(dev, &q96, &kv96, &c96.layout, &table, &mut o96, None, &p);
    if dev.kind() == BackendKind::Cpu {
        r.unwrap();
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("head_dim = 96"), "{e}");
    }
    let p = DecodeParams { num_qo_heads: 4, layer: 0, sm_scale: f32::NAN };
    let e = paged_decode(dev, &q, &kv, &cache.layout, &table, &mut out, None, &p).unwrap_err();
    assert!(e.to_string().contains("sm_scale"), "{e}");
}

per_backend!(matches_reference, rejects_bad_input);
