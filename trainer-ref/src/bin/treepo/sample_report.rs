//! What `treepo sample` prints: every trajectory, then the cost of the run.

use treepo_sampler::RolloutTree;
use treepo_trainer::engine::ModelEngine;
use treepo_trainer::model::Tokenizer;

use crate::sample::{SampleArgs, Shape};

/// Prints the trajectories of the (single) query of `tree` and the cost summary.
pub fn print(
    tree: &RolloutTree,
    tok: &Tokenizer,
    engine: &ModelEngine<'_>,
    a: &SampleArgs,
    shape: Shape,
    prompt: &str,
    secs: f64,
) {
    let mode = if a.sequential { "sequential" } else { "tree" };
    let cfg = engine.model().config();
    println!(
        "{mode} sampling: w={} b={} d={} l={} T={} seed={} | model {} layers, C={}, vocab {} | attention head size {}",
        shape.width,
        shape.branch,
        shape.depth,
        shape.segment,
        a.temperature,
        a.seed,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.vocab_size,
        engine.attn_head_dim(),
    );
    let mut trajectories = 0;
    let mut tokens = 0;
    for q in tree.queries() {
        println!("prompt: {prompt:?} ({} tokens), status {:?}", q.prompt().len(), q.status());
        for (i, leaf) in q.leaves().iter().enumerate() {
            let ids = q.response_tokens(i);
            let logp: f32 = q.response_logprobs(i).iter().sum();
            let text = tok.decode(&ids).unwrap_or_else(|e| format!("<undecodable: {e}>"));
            println!(
                "  trajectory {i:>3}  {:<12} len {:>4}  logp {:>9.3}  {text:?}",
                leaf.reason().label(),
                leaf.response_len(),
                logp
            );
            trajectories += 1;
            tokens += ids.len();
        }
    }
    let c = tree.cost();
    println!(
        "cost: {trajectories} trajectories ({tokens} response tokens), {} tokens decoded, {} engine steps, \
         {} forks, {} fallbacks, peak {} KV pages, {} KV-exhaustion events",
        c.tokens_decoded,
        c.engine_steps,
        c.forks,
        c.fallbacks,
        c.peak_kv_pages,
        c.kv_exhausted_events
    );
    let t = c.time;
    println!(
        "time: {secs:.3} s (prefill {:.3}, decode {:.3}, fork {:.3}, scheduler {:.3}): {:.1} trajectories/s, {:.0} tokens/s",
        t.prefill.as_secs_f64(),
        t.decode.as_secs_f64(),
        t.fork.as_secs_f64(),
        t.scheduler.as_secs_f64(),
        trajectories as f64 / secs,
        c.tokens_decoded as f64 / secs,
    );
    let s = engine.stats();
    println!(
        "engine: {} forwards over {} rows, {} sampling steps, {} tail-page copies, {} prompt tokens from the prefix cache",
        s.forwards, s.rows, s.decode_steps, s.page_copies, s.cached_prompt_tokens
    );
}
