//! Embedding backward, ACCUMULATING: `dtable[ids[t], :] += dout[t, :]` for each token `t`.
//!
//! Deterministic and bit-identical to the GPU kernels: every row of `dtable` receives its
//! tokens' gradients in token order. Tokens are grouped by id with a stable counting sort, then
//! rows are updated in parallel (distinct rows, no sharing).

use rayon::prelude::*;

/// `dout`: `[tokens, dim]`; `ids`: `[tokens]`, each in `[0, vocab)`; `dtable`: `[vocab, dim]`.
pub fn embedding_bwd(dout: &[f32], ids: &[i32], dtable: &mut [f32], dim: usize) {
    let vocab = dtable.len() / dim;
    // start[id]..start[id + 1] indexes `order`, the tokens of `id` in token order.
    let mut start = vec![0usize; vocab + 1];
    for &id in ids {
        start[id as usize + 1] += 1;
    }
    for i in 0..vocab {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut order = vec![0usize; ids.len()];
    for (t, &id) in ids.iter().enumerate() {
        order[next[id as usize]] = t;
        next[id as usize] += 1;
    }
    super::regions::enter();
    dtable.par_chunks_mut(dim).enumerate().for_each(|(id, row)| {
        for &t in &order[start[id]..start[id + 1]] {
            for (r, g) in row.iter_mut().zip(&dout[t * dim..(t + 1) * dim]) {
                *r += g;
            }
        }
    });
}
