//! The shared core of the CPU decode kernels ([`paged_decode`](super::paged_decode) and
//! [`tree_decode`](super::tree_decode)): a tile of `m` query vectors (the rows of one job × the
//! GQA group of one KV head) attends to a contiguous range of KV positions held in a page list.
//!
//! **Shared read.** Each block of up to [`BLOCK`] tokens is gathered from its pages ONCE into a
//! contiguous `[tokens × head_dim]` scratch, then used by all `m` query vectors through two
//! small GEMMs (`S = Q·Kᵀ`, `O += P·V`, the `gemm` crate with runtime AVX2/AVX-512 dispatch).
//! The naive kernel calls this with one leaf's rows (m = q_rows × group); the tree kernel with
//! a whole node's leaves (m = leaves × q_rows × group) — the only difference between them.
//!
//! Numerics: f32 throughout; online softmax with the running max per query vector; the LSE is
//! the NATURAL log `max + ln(sum)`. A query vector that sees no key of the range (causally
//! masked out, or `lim < kv_start`) yields `o = 0`, `lse = -inf` (an empty state).

use super::gemm::gemm_strided;

/// Tokens per gathered KV block.
pub const BLOCK: usize = 128;

/// Where one KV head of one layer lives in the cache slice (element offsets and strides of
/// [`PagedKvLayout`](crate::ops::PagedKvLayout), with layer and head already applied in `base`).
#[derive(Clone, Copy, Debug)]
pub struct KvHead<'a> {
    /// The cache elements.
    pub data: &'a [f32],
    /// Offset of (layer, page 0, K, head, token 0, d 0).
    pub base: usize,
    /// Elements between pages.
    pub stride_page: usize,
    /// Elements from K to V.
    pub stride_kv: usize,
    /// Elements between tokens.
    pub stride_token: usize,
    /// Tokens per page.
    pub page_size: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// One layer of a paged cache as the CPU kernels see it (see
/// [`PagedKvLayout`](crate::ops::PagedKvLayout); `layer_base` = the layer's first element).
#[derive(Clone, Copy, Debug)]
pub struct KvGeom {
    /// Offset of the layer's first element in the cache slice.
    pub layer_base: usize,
    /// Elements between pages.
    pub stride_page: usize,
    /// Elements from K to V.
    pub stride_kv: usize,
    /// Elements between heads.
    pub stride_head: usize,
    /// Elements between tokens.
    pub stride_token: usize,
    /// Tokens per page.
    pub page_size: usize,
    /// Values per head.
    pub head_dim: usize,
    /// KV heads.
    pub num_kv_heads: usize,
}

impl KvGeom {
    /// KV head `h` of this layer in `data`.
    pub fn head<'a>(&self, data: &'a [f32], h: usize) -> KvHead<'a> {
        KvHead {
            data,
            base: self.layer_base + h * self.stride_head,
            stride_page: self.stride_page,
            stride_kv: self.stride_kv,
            stride_token: self.stride_token,
            page_size: self.page_size,
            head_dim: self.head_dim,
        }
    }
}

/// The query tile of KV head `kvh`: for each q row in `rows` (caller row indices), its `group`
/// heads `kvh*group..` — `[rows × group × head_dim]`, query vector `i` = (row `i / group`,
/// head `kvh*group + i % group`). `q` is `[rows, num_qo_heads, head_dim]`.
pub fn gather_q(
    q: &[f32],
    rows: impl Iterator<Item = usize>,
    num_qo_heads: usize,
    group: usize,
    head_dim: usize,
    kvh: usize,
    dst: &mut Vec<f32>,
) {
    dst.clear();
    for r in rows {
        let b = (r * num_qo_heads + kvh * group) * head_dim;
        dst.extend_from_slice(&q[b..b + group * head_dim]);
    }
}

/// Runs `job(i, worker state)` for every task `i` of `costs` (one estimate per task) on rayon's
/// workers and returns what each worker ran: its final state and its `(task, result)` pairs,
/// in the order it ran them (every task in exactly one part).
///
/// *Heavy tasks first.* A task of more than half a worker's share of the total cost (each
/// task counts `cost + 1`) — a long shared prefix's, many times a leaf's — is heavy: the
/// workers take the heavy tasks first, largest first, from one shared list, so they start at
/// once on different workers (greedy list scheduling). In one contiguous part the two KV heads
/// of a 1k-token prefix would run one after the other on one worker.
///
/// *Affinity.* Callers list their tasks in query-row order. The light tasks are cut into one
/// contiguous part per worker of near-equal total cost, and the calling thread runs part 0:
/// the first rows, whose queries and new K/V rows it wrote itself in the ops before (rayon
/// runs the first half of every split inline on the caller, as the row-split GEMM and the
/// elementwise loops do). Handing every task out from one counter made each worker read
/// about half its rows from the other core's cache: at 64 leaves of the demo model a task took
/// longer on two threads than on one (`docs/engine.md`).
///
/// *Balance.* Within a part the heaviest task runs first; a worker done with its part takes
/// the next unstarted task of the other parts, from the next part on.
pub fn run_affine<S: Default + Send, R: Send>(
    costs: &[u64],
    job: impl Fn(usize, &mut S) -> R + Sync,
) -> Vec<(S, Vec<(usize, R)>)> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = costs.len();
    let workers = rayon::current_num_threads().clamp(1, n.max(1));
    let weight = |i: usize| u128::from(costs[i]) + 1;
    let total: u128 = (0..n).map(weight).sum();
    let (heavy, light): (Vec<usize>, Vec<usize>) =
        (0..n).partition(|&i| weight(i) * 2 * workers as u128 > total);
    // `order`: the heavy tasks, largest first, then the light ones in parts; `ends[0]` ends the
    // heavy list and `ends[1 + w]` part `w` (each list starts where the one before ends).
    let mut order = heavy;
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    let mut ends = vec![order.len(); workers + 1];
    let light_total: u128 = light.iter().map(|&i| weight(i)).sum();
    let (mut acc, mut w) = (0u128, 0);
    for i in light {
        order.push(i);
        acc += weight(i);
        while w + 1 < workers && acc * workers as u128 >= light_total * (w as u128 + 1) {
            ends[1 + w] = order.len();
            w += 1;
        }
    }
    for e in &mut ends[1 + w..] {
        *e = n;
    }
    for l in 1..=workers {
        order[ends[l - 1]..ends[l]].sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    }
    let next: Vec<AtomicUsize> =
        (0..=workers).map(|l| AtomicUsize::new(if l == 0 { 0 } else { ends[l - 1] })).collect();
    super::regions::enter();
    // `with_max_len(1)`: one item per worker; item 0 runs inline on the calling thread.
    (0..workers)
        .into_par_iter()
        .with_max_len(1)
        .map(|me| {
            let mut state = S::default();
            let mut done = Vec::new();
            // The heavy list, then this worker's part, then the others' from the next on.
            let lists = std::iter::once(0).chain((me..workers).chain(0..me).map(|w| w + 1));
            for list in lists {
                loop {
                    let at = next[list].fetch_add(1, Ordering::Relaxed);
                    if at >= ends[list] {
                        break;
                    }
                    let i = order[at];
                    let r = job(i, &mut state);
                    done.push((i, r));
                }
            }
            (state, done)
        })
        .collect()
}

/// The per-worker state of the decode job loops (`paged_decode`, `tree_decode`): the tile's
/// scratch, one task's gathered queries `qt` and limits `lim`, and the results of every task
/// the worker ran, back to back in one growing buffer (a task's `o [m × head_dim]`, then its
/// `lse [m]`) — instead of two allocations per task, which were a tenth of the engine's
/// attention time at 64 leaves of a short context.
#[derive(Debug)]
pub struct Worker<S> {
    /// The tile's scratch.
    pub sc: S,
    /// The task's queries, `[m × head_dim]` (see [`gather_q`]).
    pub qt: Vec<f32>,
    /// The task's per-vector limits.
    pub lim: Vec<i64>,
    results: Vec<f32>,
}

impl<S: Default> Default for Worker<S> {
    fn default() -> Self {
        Worker { sc: S::default(), qt: Vec::new(), lim: Vec::new(), results: Vec::new() }
    }
}

impl<S> Worker<S> {
    /// Attends the task's `qt`/`lim` to `chunk` on tile `T` (its contract); returns where the
    /// result starts, for [`Worker::result`].
    pub fn attend<T: Tile<Scratch = S>>(
        &mut self,
        kv: &KvHead<'_>,
        chunk: &Chunk<'_>,
        scale: f32,
    ) -> usize {
        let (m, d) = (self.lim.len(), kv.head_dim);
        let at = self.results.len();
        self.results.resize(at + m * (d + 1), 0.0);
        let (o, lse) = self.results[at..].split_at_mut(m * d);
        T::attend(kv, chunk, &self.qt, &self.lim, scale, o, lse, &mut self.sc);
        at
    }

    /// The output `[m × d]` and LSEs `[m]` of the task [`Worker::attend`] placed at `at`.
    pub fn result(&self, at: usize, m: usize, d: usize) -> (&[f32], &[f32]) {
        self.results[at..at + m * (d + 1)].split_at(m * d)
    }
}

/// A contiguous range of positions `[kv_start, kv_end)`; position `kv_start + i` is in page
/// `pages[i / page_size]`, slot `i % page_size`.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// Page ids of the range, in order.
    pub pages: &'a [i32],
    /// First position.
    pub kv_start: usize,
    /// One past the last position.
    pub kv_end: usize,
}

impl Chunk<'_> {
    /// One past the last position any of the vectors with limits `lim` sees (`kv_start` when
    /// none sees any): where a tile's block loop stops.
    pub(crate) fn seen_end(&self, lim: &[i64]) -> usize {
        let max_lim = lim.iter().copied().max().unwrap_or(-1);
        (self.kv_end as i64).min(max_lim + 1).max(self.kv_start as i64) as usize
    }
}

/// A decode tile: how the `m` query vectors of one job attend to one KV range of one KV head
/// (the contract of [`attend`]). The job loops of [`paged_decode`](super::paged_decode) and
/// [`tree_decode`](super::tree_decode) are generic over it, so the reference ([`Gather`]) and
/// the fast twin ([`fast::decode_tile::InPlace`](super::fast::decode_tile::InPlace)) run the
/// same jobs and differ only in the tile.
pub trait Tile: Sync {
    /// Reusable buffers of one worker.
    type Scratch: Default + Send;
    /// Same contract as [`attend`].
    #[allow(clippy::too_many_arguments)]
    fn attend(
        kv: &KvHead<'_>,
        chunk: &Chunk<'_>,
        q: &[f32],
        lim: &[i64],
        scale: f32,
        o: &mut [f32],
        lse: &mut [f32],
        sc: &mut Self::Scratch,
    );
}

/// The reference tile: [`attend`], which gathers every block into a contiguous scratch.
#[derive(Clone, Copy, Debug)]
pub struct Gather;

impl Tile for Gather {
    type Scratch = Scratch;
    fn attend(
        kv: &KvHead<'_>,
        chunk: &Chunk<'_>,
        q: &[f32],
        lim: &[i64],
        scale: f32,
        o: &mut [f32],
        lse: &mut [f32],
        sc: &mut Scratch,
    ) {
        attend(kv, chunk, q, lim, scale, o, lse, sc);
    }
}

/// Reusable buffers of [`attend`].
#[derive(Default, Debug)]
pub struct Scratch {
    k: Vec<f32>,
    v: Vec<f32>,
    s: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

/// Attends `q` (`[m × head_dim]`, row-major) to `chunk` for one KV head. Query vector `i` sees
/// positions `<= lim[i]` (and `< kv_end`). Writes the normalized output `o [m × head_dim]` and
/// the natural-log LSE `lse [m]`. `scale` multiplies `q·k`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    kv: &KvHead<'_>,
    chunk: &Chunk<'_>,
    q: &[f32],
    lim: &[i64],
    scale: f32,
    o: &mut [f32],
    lse: &mut [f32],
    sc: &mut Scratch,
) {
    let (m, d) = (lim.len(), kv.head_dim);
    o[..m * d].fill(0.0);
    sc.m.clear();
    sc.m.resize(m, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(m, 0.0);
    let hi = chunk.seen_end(lim);
    let mut t0 = chunk.kv_start;
    while t0 < hi {
        let bl = BLOCK.min(hi - t0);
        gather(kv, chunk, t0, bl, 0, &mut sc.k);
        gather(kv, chunk, t0, bl, kv.stride_kv, &mut sc.v);
        sc.s.resize(m * bl, 0.0);
        // S[m × bl] = scale · Q[m × d] · K[bl × d]ᵀ
        gemm_strided(m, bl, d, q, (d, 1), &sc.k, (1, d), &mut sc.s, scale, 0.0, 1);
        for i in 0..m {
            let row = &mut sc.s[i * bl..(i + 1) * bl];
            let nvalid = (lim[i] + 1 - t0 as i64).clamp(0, bl as i64) as usize;
            if nvalid == 0 {
                row.fill(0.0);
                continue;
            }
            let orow = &mut o[i * d..(i + 1) * d];
            softmax_row(&mut row[..nvalid], &mut sc.m[i], &mut sc.l[i], orow);
            row[nvalid..].fill(0.0);
        }
        // O[m × d] += P[m × bl] · V[bl × d]
        gemm_strided(m, d, bl, &sc.s, (bl, 1), &sc.v, (d, 1), o, 1.0, 1.0, 1);
        t0 += bl;
    }
    finish(o, lse, &sc.m, &sc.l, d);
}

/// One block of the online softmax for one query vector (shared with the row tile): `row`, the
/// vector's scores of the positions it sees, becomes `exp(score - m_new)`; the running max `m`
/// and sum `l` advance, and the output accumulated so far, `orow`, is rescaled by
/// `exp(m_old - m_new)`.
pub(crate) fn softmax_row(row: &mut [f32], m: &mut f32, l: &mut f32, orow: &mut [f32]) {
    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    softmax_row_max(row, mx, m, l, orow);
}

/// [`softmax_row`] given `mx`, the row's largest score (`f32::max` over it: NaN scores
/// ignored, `-inf` for an empty row), which a caller may have found while it wrote the scores.
#[inline]
pub(crate) fn softmax_row_max(
    row: &mut [f32],
    mx: f32,
    m: &mut f32,
    l: &mut f32,
    orow: &mut [f32],
) {
    let m_new = m.max(mx);
    let alpha = (*m - m_new).exp();
    let sum = exp_shifted(row, m_new);
    *l = *l * alpha + sum;
    *m = m_new;
    if alpha != 1.0 {
        orow.iter_mut().for_each(|x| *x *= alpha);
    }
}

/// Ends a tile of `m = l.len()` query vectors (shared with the row tile): output row `i` is
/// divided by its sum and `lse[i] = m[i] + ln l[i]`; a vector that saw no key (`l = 0`, its
/// output still all zero) gets `lse = -inf`.
pub(crate) fn finish(o: &mut [f32], lse: &mut [f32], m: &[f32], l: &[f32], d: usize) {
    for (i, (&mi, &li)) in m.iter().zip(l).enumerate() {
        if li > 0.0 {
            let inv = 1.0 / li;
            o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
            lse[i] = mi + li.ln();
        } else {
            lse[i] = f32::NEG_INFINITY;
        }
    }
}

/// Copies K (`which = 0`) or V (`which = stride_kv`) of positions `[t0, t0 + n)` into `dst`
/// as `[n × head_dim]`.
fn gather(kv: &KvHead<'_>, c: &Chunk<'_>, t0: usize, n: usize, which: usize, dst: &mut Vec<f32>) {
    let d = kv.head_dim;
    dst.resize(n * d, 0.0);
    for (t, row) in dst.chunks_exact_mut(d).enumerate() {
        let rel = t0 + t - c.kv_start;
        let page = c.pages[rel / kv.page_size] as usize;
        let src = kv.base + page * kv.stride_page + which + (rel % kv.page_size) * kv.stride_token;
        row.copy_from_slice(&kv.data[src..src + d]);
    }
}

/// `x[i] = exp(x[i] - shift)` in place; returns the sum. A branch-free polynomial `exp`
/// (relative error < 4e-7 for arguments in [-87, 0]; below -87 it returns 0) that the compiler
/// vectorizes — `f32::exp` per element would dominate the tile time. On x86-64 CPUs with AVX2
/// and FMA the same code runs compiled for them (8 lanes instead of SSE2's 4).
pub fn exp_shifted(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, the features `exp_shifted_avx2` is compiled
        // for (checked just above).
        return unsafe { exp_shifted_avx2(x, shift) };
    }
    exp_shifted_portable(x, shift)
}

/// [`exp_shifted`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(x: &mut [f32], shift: f32) -> f32 {
    exp_shifted_portable(x, shift)
}

/// Two simple loops the vectorizer handles: an elementwise map (if-converted selects), then
/// an 8-lane sum (a float reduction in one accumulator would not vectorize: strict order).
#[inline(always)]
fn exp_shifted_portable(x: &mut [f32], shift: f32) -> f32 {
    for v in x.iter_mut() {
        *v = fast_exp(*v - shift);
    }
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for v in chunks.remainder() {
        sum += *v;
    }
    sum
}

/// `e^x` for `x <= 0` (and -inf): [`math::exp`](super::math::exp) (a degree-7 polynomial after
/// a Cody–Waite reduction; 0 below −87), which loops vectorize over.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    super::math::exp(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tasks each worker ran, as (rayon thread, tasks in the order it ran them); part 0's
    /// thread is checked to be the calling one.
    fn ran(pool: &rayon::ThreadPool, costs: &[u64]) -> Vec<(Option<usize>, Vec<usize>)> {
        let (caller, parts) = pool.install(|| {
            let parts = run_affine(costs, |i, who: &mut Option<usize>| {
                *who = rayon::current_thread_index();
                i * 10
            });
            (rayon::current_thread_index(), parts)
        });
        if let Some((who, done)) = parts.first().filter(|p| !p.1.is_empty()) {
            assert_eq!(*who, caller, "part 0 ({done:?}) ran off the calling thread");
        }
        parts
            .into_iter()
            .map(|(who, done)| {
                assert!(done.iter().all(|&(i, r)| r == i * 10), "a result is not its task's");
                (who, done.into_iter().map(|(i, _)| i).collect())
            })
            .collect()
    }

    #[test]
    fn run_affine_runs_every_task_once_on_any_costs() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let mut x = 12345u64;
        for n in [0usize, 1, 2, 3, 5, 17, 64, 200] {
            for zeros in [false, true] {
                let costs: Vec<u64> = (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if zeros { 0 } else { (x >> 33) % 1000 }
                    })
                    .collect();
                let mut all: Vec<usize> =
                    ran(&pool, &costs).into_iter().flat_map(|p| p.1).collect();
                all.sort_unstable();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}, zero costs {zeros}");
            }
        }
    }

    #[test]
    fn run_affine_gives_the_caller_the_first_rows_and_starts_heavy_tasks_first() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // Equal costs: part 0 is tasks 0..32, run by the calling thread from task 0 on; the
        // other worker, if it ran anything, started in its own part.
        for _ in 0..20 {
            let parts = ran(&pool, &[5; 64]);
            assert_eq!(parts[0].1[0], 0, "the caller starts with its own first task");
            if let Some(first) = parts[1].1.first() {
                assert!(*first >= 32, "worker 1 began with task {first}, in part 0");
            }
        }
        // Two heavy tasks (over half a worker's share): the largest starts first, on
        // the caller; the other worker begins with the other heavy one or in its own part.
        let mut costs = vec![1u64; 40];
        costs[7] = 500;
        costs[30] = 600;
        for _ in 0..20 {
            let parts = ran(&pool, &costs);
            assert_eq!(parts[0].1[0], 30, "the largest task starts first");
            if let Some(&first) = parts[1].1.first() {
                assert!(first == 7 || first >= 20, "worker 1 began with task {first}");
            }
        }
    }

    #[test]
    fn fast_exp_is_accurate_and_underflows_to_zero() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let rel = ((fast_exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(-200.0), 0.0);
        assert_eq!(fast_exp(-87.5), 0.0);
        assert_eq!(fast_exp(0.0), 1.0);
    }

    #[test]
    fn exp_shifted_matches_f64_on_every_path() {
        // 37 values: a vector body plus a remainder; -inf entries (masked scores) give 0.
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 1.7).sin() * 30.0).collect();
        x[5] = f32::NEG_INFINITY;
        let shift = 31.0;
        // The shift is applied in f32 (as the kernel does); the exp is what is tested.
        let want: Vec<f64> = x.iter().map(|&v| ((v - shift) as f64).exp()).collect();
        let mut got = x.clone();
        let sum = exp_shifted(&mut got, shift);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 4e-7 * w + 1e-38, "{g} vs {w}");
        }
        let want_sum: f64 = want.iter().sum();
        assert!((sum as f64 - want_sum).abs() <= 1e-6 * want_sum);
        let mut portable = x.clone();
        assert_eq!(exp_shifted_portable(&mut portable, shift), sum);
    }
}
