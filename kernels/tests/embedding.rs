//! Conformance of `ops::embedding`: a gather is a copy, so results must be bit-exact.

use treepo_kernels::testing::{Rng, poisoned};
use treepo_kernels::{Device, Indices, ops, per_backend};

fn gathers_rows(dev: &Device) {
    let mut rng = Rng::fresh("embedding");
    // 1 token of a 1×1 table; sizes off every tile; a 152k-row vocabulary; repeated ids.
    for (vocab, dim, tokens) in
        [(1usize, 1usize, 1usize), (97, 33, 77), (151_936, 8, 5), (5, 300, 40)]
    {
        let table = rng.normals(vocab * dim, 1.0);
        let mut ids: Vec<i32> = (0..tokens).map(|_| rng.below(vocab) as i32).collect();
        ids[0] = (vocab - 1) as i32; // the last row
        if tokens > 2 {
            ids[1] = 0;
            ids[2] = ids[0]; // a repeat
        }
        let dt = dev.upload(&table).unwrap();
        let di = Indices::upload(dev, &ids, vocab).unwrap();
        // The output is a view at an offset inside a larger poisoned buffer.
        let mut out = poisoned::<f32>(dev, tokens * dim + 7).unwrap();
        let view = out.slice_mut(3..3 + tokens * dim).unwrap();
        ops::embedding(dev, &dt, &di, view, tokens, vocab, dim).unwrap();
        let got = dev.download(&out).unwrap();
        for (t, &id) in ids.iter().enumerate() {
            let want = &table[id as usize * dim..(id as usize + 1) * dim];
            let row = &got[3 + t * dim..3 + (t + 1) * dim];
            assert!(
                row.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "embedding vocab={vocab} dim={dim}: token {t} (id {id}) differs"
            );
        }
        assert!(
            got[..3].iter().chain(&got[3 + tokens * dim..]).all(|v| v.is_nan()),
            "wrote outside"
        );
    }
}

fn gathers_from_a_table_view(dev: &Device) {
    // The table is a view into a shared parameter buffer; fewer tokens than ids.
    let mut rng = Rng::fresh("embedding view");
    let (vocab, dim) = (11, 6);
    let params = rng.normals(5 + vocab * dim, 1.0);
    let buf = dev.upload(&params).unwrap();
    let ids = Indices::upload(dev, &[3, 10, 0, 7], vocab).unwrap();
    let mut out = poisoned::<f32>(dev, 3 * dim).unwrap();
    let table = buf.slice(5..5 + vocab * dim).unwrap();
    ops::embedding(dev, table, &ids, &mut out, 3, vocab, dim).unwrap();
    let got = dev.download(&out).unwrap();
    for (t, id) in [3usize, 10, 0].into_iter().enumerate() {
        assert_eq!(&got[t * dim..(t + 1) * dim], &params[5 + id * dim..5 + (id + 1) * dim]);
    }
}

fn rejects_bad_args(dev: &Device) {
    let table = dev.zeros::<f32>(12).unwrap();
    let mut out = dev.zeros::<f32>(8).unwrap();
    let ids = Indices::upload(dev, &[0, 3], 4).unwrap();
    let err = ops::embedding(dev, &table, &ids, &mut out, 2, 3, 4).unwrap_err();
    assert!(err.to_string().contains("`ids` values may reach 3 but only 3 exist"), "{err}");
    let err = ops::embedding(dev, &table, &ids, &mut out, 2, 4, 4).unwrap_err();
    assert!(err.to_string().contains("`table` holds 12 elements but the shape needs 16"), "{err}");
    let err = ops::embedding(dev, &table, &ids, &mut out, 3, 4, 3).unwrap_err();
    assert!(err.to_string().contains("`ids` holds 2 elements but the shape needs 3"), "{err}");
    let ids = Indices::upload(dev, &[0, 1, 2], 3).unwrap();
    let err = ops::embedding(dev, &table, &ids, &mut out, 3, 4, 3).unwrap_err();
    assert!(err.to_string().contains("`out` holds 8 elements but the shape needs 9"), "{err}");
    let err = ops::embedding(dev, &table, &ids, &mut out, 3, 4, 0).unwrap_err();
    assert!(err.to_string().contains("dim must be > 0"), "{err}");
}

per_backend!(gathers_rows, gathers_from_a_table_view, rejects_bad_args);
