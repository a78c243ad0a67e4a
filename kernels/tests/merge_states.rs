//! Conformance of `ops::merge_states` against an f64 reference, on every backend: variable
//! counts per row (0, 1, several), empty states (`lse = -inf`) whose `o` is NaN garbage (merging
//! them must be a no-op), LSEs far apart, a permuted output order, both `SingleRows` modes, and
//! every output dtype of the backend. Plus typed errors for bad row tables.

use crate::decode_common::{download, dtypes, tols, upload};
use treepo_kernels::ops::{MergeRows, SingleRows, merge_states};
use treepo_kernels::testing::{Rng, assert_close};
use treepo_kernels::{Device, FloatElement, per_backend};

fn reference(
    o: &[f32],
    l: &[f32],
    indptr: &[i32],
    heads: usize,
    d: usize,
    r: usize,
    h: usize,
) -> (Vec<f64>, f64) {
    let states: Vec<usize> = (indptr[r] as usize..indptr[r + 1] as usize)
        .filter(|&s| l[s * heads + h] != f32::NEG_INFINITY)
        .collect();
    if states.is_empty() {
        return (vec![0.0; d], f64::NEG_INFINITY);
    }
    let m = states.iter().map(|&s| l[s * heads + h] as f64).fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = states.iter().map(|&s| (l[s * heads + h] as f64 - m).exp()).collect();
    let sum: f64 = w.iter().sum();
    let mut out = vec![0f64; d];
    for (&s, wi) in states.iter().zip(&w) {
        for (x, &v) in out.iter_mut().zip(&o[(s * heads + h) * d..][..d]) {
            *x += wi * v as f64 / sum;
        }
    }
    (out, m + sum.ln())
}

fn check<T: FloatElement>(dev: &Device, rng: &mut Rng, single: SingleRows) {
    let (heads, d) = (3, 40);
    // Counts cycle through 0..=5 with a few long rows; row 2 is a state plus an empty one.
    let counts: Vec<usize> = (0..23).map(|i| if i % 7 == 6 { 9 } else { i % 6 }).collect();
    let mut indptr = vec![0i32];
    for c in &counts {
        indptr.push(indptr.last().unwrap() + *c as i32);
    }
    let n = *indptr.last().unwrap() as usize;
    let mut o = rng.normals(n * heads * d, 1.0);
    let mut l: Vec<f32> = rng.normals(n * heads, 20.0);
    for s in 0..n {
        for h in 0..heads {
            if rng.below(5) == 0 || (s == indptr[2] as usize + 1 && h == 0) {
                l[s * heads + h] = f32::NEG_INFINITY;
                o[(s * heads + h) * d..][..d].fill(f32::NAN);
            }
        }
    }
    let rows = counts.len();
    let perm: Vec<i32> = rng.permutation(rows).into_iter().map(|p| p as i32).collect();
    let table = MergeRows::upload(dev, &indptr, Some(&perm)).unwrap();
    assert_eq!((table.num_rows(), table.num_states(), table.max_count()), (rows, n, 9));
    let (ob, lb) = (dev.upload(&o).unwrap(), dev.upload(&l).unwrap());
    // Single-state rows keep a sentinel when skipped.
    let sentinel = 7.0f32;
    let mut out = upload::<T>(dev, &vec![sentinel; rows * heads * d]);
    let mut lse = dev.full(rows * heads, sentinel).unwrap();
    merge_states(dev, &ob, &lb, &table, &mut out, Some(lse.view_mut()), heads, d, single).unwrap();
    let (mut want_o, mut want_l) = (vec![0f64; rows * heads * d], vec![0f64; rows * heads]);
    for r in 0..rows {
        let c = perm[r] as usize;
        for h in 0..heads {
            let (wo, wl) = if single == SingleRows::Skip && counts[r] == 1 {
                (vec![sentinel as f64; d], sentinel as f64)
            } else {
                reference(&o, &l, &indptr, heads, d, r, h)
            };
            want_o[(c * heads + h) * d..][..d].copy_from_slice(&wo);
            want_l[c * heads + h] = wl;
        }
    }
    let what = format!("merge_states {} {single:?}", T::DTYPE);
    let (to, _) = tols(T::DTYPE);
    let eo = assert_close(&format!("{what} out"), &download(dev, &out), &want_o, to);
    let el = assert_close(
        &format!("{what} lse"),
        &dev.download(&lse).unwrap(),
        &want_l,
        treepo_kernels::testing::Tol { atol: 1e-4, rtol: 1e-6 },
    );
    eprintln!("{what}: max err out {eo:e} lse {el:e}");
    // Merging with an empty state is a no-op: row 2 equals its one non-empty state (head 0).
    let s0 = indptr[2] as usize;
    if counts[2] == 2 && l[s0 * heads] != f32::NEG_INFINITY {
        let c = perm[2] as usize;
        let got = &download(dev, &out)[c * heads * d..][..d];
        let want: Vec<f64> = o[s0 * heads * d..][..d].iter().map(|&x| x as f64).collect();
        assert_close(&format!("{what} merge with an empty state"), got, &want, to);
    }
}

fn matches_reference(dev: &Device) {
    let mut rng = Rng::fresh("merge_states");
    for dtype in dtypes(dev) {
        for single in [SingleRows::Copy, SingleRows::Skip] {
            with_dtype!(dtype, check(dev, &mut rng, single));
        }
    }
}

fn rejects_bad_rows(dev: &Device) {
    let e = MergeRows::upload(dev, &[0, 2, 1], None).unwrap_err().to_string();
    assert!(e.contains("`indptr` is not monotone: [1] = 2 > [2] = 1"), "{e}");
    let e = MergeRows::upload(dev, &[1, 2], None).unwrap_err().to_string();
    assert!(e.contains("`indptr[0]` = 1 must be 0"), "{e}");
    let e = MergeRows::upload(dev, &[0, 1, 2], Some(&[1, 1])).unwrap_err().to_string();
    assert!(e.contains("`out_rows` maps two rows to output row 1"), "{e}");
    let e = MergeRows::upload(dev, &[0, 1, 2], Some(&[0])).unwrap_err().to_string();
    assert!(e.contains("`out_rows` has 1 entries but `indptr` describes 2 rows"), "{e}");
    let e = MergeRows::upload(dev, &[], None).unwrap_err().to_string();
    assert!(e.contains("at least one entry"), "{e}");
    let table = MergeRows::upload(dev, &[0, 2, 3], None).unwrap();
    let (o, l) = (dev.zeros::<f32>(3 * 2 * 8).unwrap(), dev.zeros::<f32>(5).unwrap());
    let mut out = dev.zeros::<f32>(2 * 2 * 8).unwrap();
    let e = merge_states(dev, &o, &l, &table, &mut out, None, 2, 8, SingleRows::Copy).unwrap_err();
    assert!(e.to_string().contains("`partial_lse` holds 5 elements but the shape needs 6"), "{e}");
}

per_backend!(matches_reference, rejects_bad_rows);
