//! The CPU decode tile's kernel widths side by side: one KV head, one thread, `m` query
//! vectors attending to 1 024 in-cache tokens (head_dim 128), on every kernel set this CPU runs
//! (`Reference` = gather + GEMM, `Rows` = in place with lanes along `head_dim`, `Avx2` = 8-lane
//! panels in place, `Avx512` = 16-lane panels in place).
//! Prints GFLOP/s of useful work (`4·m·tokens·head_dim`: QKᵀ and PV) per set, and which set
//! `Kernels::for_vectors` picks — the evidence for its thresholds.

use std::time::{Duration, Instant};

use treepo_kernels::cpu::decode_tile::{Chunk, KvHead};
use treepo_kernels::cpu::fast::decode_tile::{Kernels, Scratch, attend_on};
use treepo_kernels::testing::Rng;

const TOKENS: usize = 1024;
const D: usize = 128;
const PAGE: usize = 16;

/// Prints the table (`TILE_WIDTHS …` header, one row per `m`).
pub fn print() {
    let mut rng = Rng::new(7);
    let pages = TOKENS / PAGE;
    // HND pages of one head: [page][K|V][token][d]; pages in a shuffled order.
    let data = rng.normals(pages * 2 * PAGE * D, 1.0);
    let order: Vec<i32> = rng.permutation(pages).into_iter().map(|p| p as i32).collect();
    let kv = KvHead {
        data: &data,
        base: 0,
        stride_page: 2 * PAGE * D,
        stride_kv: PAGE * D,
        stride_token: D,
        page_size: PAGE,
        head_dim: D,
    };
    let chunk = Chunk { pages: &order, kv_start: 0, kv_end: TOKENS };
    let sets = [Kernels::Reference, Kernels::Rows, Kernels::Avx2, Kernels::Avx512];
    let names: Vec<String> = sets
        .iter()
        .map(|k| if k.available() { format!("{k:?}") } else { format!("{k:?}(n/a)") })
        .collect();
    println!(
        "\nTILE_WIDTHS one KV head, one thread, {TOKENS} tokens, head_dim {D}: useful GFLOP/s per kernel set"
    );
    let head: String = names.iter().map(|n| format!(" {n:>12}")).collect();
    println!("{:>4}{head}   picked", "m");
    let mut sc = Scratch::default();
    for m in [1, 2, 3, 4, 8, 12, 16, 24, 32, 64, 128] {
        let q = rng.normals(m * D, 1.0);
        let lim = vec![TOKENS as i64 - 1; m];
        let (mut o, mut lse) = (vec![0f32; m * D], vec![0f32; m]);
        let mut row = String::new();
        for k in sets {
            if !k.available() {
                row += &format!(" {:>12}", "-");
                continue;
            }
            let scale = (D as f32).powf(-0.5);
            let mut run = || attend_on(k, &kv, &chunk, &q, &lim, scale, &mut o, &mut lse, &mut sc);
            run();
            // Median of rounds of ≥ 2 ms each.
            let mut samples = Vec::new();
            for _ in 0..7 {
                let (t, mut n) = (Instant::now(), 0u32);
                while t.elapsed() < Duration::from_millis(2) {
                    run();
                    n += 1;
                }
                samples.push(t.elapsed().as_secs_f64() / n as f64);
            }
            samples.sort_by(f64::total_cmp);
            let flop = 4.0 * (m * TOKENS * D) as f64;
            row += &format!(" {:>12.1}", flop / samples[3] / 1e9);
        }
        println!("{m:>4}{row}   {:?}", Kernels::for_vectors(m));
    }
}
