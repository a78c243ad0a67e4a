//! Embedding gather: `out[t, :] = table[ids[t], :]`.

use rayon::prelude::*;

/// `table`: `[vocab, dim]`; `ids`: `[tokens]`, each in `[0, vocab)` (checked by the caller);
/// `out`: `[tokens, dim]`.
pub fn embedding(table: &[f32], ids: &[i32], out: &mut [f32], dim: usize) {
    let min = super::regions::min_len(out.len());
    out.par_chunks_mut(dim).zip(ids.par_iter()).with_min_len(min).for_each(|(o, &id)| {
        let start = id as usize * dim;
        o.copy_from_slice(&table[start..start + dim]);
    });
}
