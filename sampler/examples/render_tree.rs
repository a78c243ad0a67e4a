//! Samples two queries on the toy Markov engine and writes the rollout tree as DOT and SVG.
//!
//! `cargo run -p treepo-sampler --example render_tree -- /tmp/tree` writes `/tmp/tree.dot` and
//! `/tmp/tree.svg`, and prints the cost accounting of the tree and sequential samplers.

use treepo_sampler::toy::{self, EOS, EOT, KvConfig, MarkovConfig, ToyEngine};
use treepo_sampler::{Query, TreeConfig, TreeSampler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stem = std::env::args().nth(1).unwrap_or_else(|| "rollout".to_string());
    let mut config = TreeConfig::with_shape(6, 8, 2, 12);
    config.stop_token_ids = [EOS, EOT].into();
    config.tree_random_first_div_max = Some(4);
    config.seed = 7;
    let sampler = TreeSampler::new(config, toy::text_hooks())?;
    let markov = MarkovConfig { stop_logit: -3.5, ..MarkovConfig::default() };
    let prompts: [&[u32]; 2] = [&[12, 9, 13, 10, 5, 9, 6, 10], &[14, 11, 5, 9, 7, 10, 11, 12]];
    let mut engine = ToyEngine::markov(markov, KvConfig { page_size: 8, pool_pages: 4096 });
    let tree = sampler.sample(&mut engine, &Query::batch(&prompts))?;
    let sequential = sampler.sample_sequential(&mut engine, &Query::batch(&prompts))?;
    std::fs::write(format!("{stem}.dot"), tree.to_dot())?;
    std::fs::write(format!("{stem}.svg"), tree.to_svg())?;
    for (name, t) in [("tree", &tree), ("sequential", &sequential)] {
        let c = t.cost();
        println!(
            "{name:<10} leaves {:>3}  tokens decoded {:>5}  steps {:>2}  forks {:>3}  fallbacks {:>2}  peak KV pages {:>4}",
            t.total_leaves(),
            c.tokens_decoded,
            c.engine_steps,
            c.forks,
            c.fallbacks,
            c.peak_kv_pages
        );
    }
    for q in tree.queries() {
        for (i, leaf) in q.leaves().iter().enumerate().take(3) {
            println!(
                "query {} leaf {i} ({:?}): {}",
                q.id(),
                leaf.reason(),
                toy::detokenize(&q.response_tokens(i))
            );
        }
    }
    println!("wrote {stem}.dot and {stem}.svg");
    Ok(())
}
