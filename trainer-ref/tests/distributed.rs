//! The RL step split across processes (`treepo_trainer::distributed`): a rollout shard's flat
//! arrays rebuild exactly the rollouts the single-process trainer trains on; slices of a batch
//! sampled with their batch offsets draw the whole batch's trees; one data-parallel rank is
//! exactly `rl_iteration`'s update; `world` ranks' rank-ordered gradient sum is the whole
//! mini-batch's gradient (to rounding) with batch-wide advantages; misuse is a typed error.

use std::path::Path;

use treepo_kernels::Device;
use treepo_kernels::testing::{Tol, assert_close};
use treepo_trainer::distributed::{
    RankUpdate, RolloutShard, apply_gradient, sum_in_rank_order, update_local,
};
use treepo_trainer::model::Model;
use treepo_trainer::pipeline::{self, RlSettings, SamplingMode};
use treepo_trainer::rl::{AdvantageEstimator, compute_leaf_advantages};
use treepo_trainer::rollout::Rollouts;
use treepo_trainer::run::RunConfig;
use treepo_trainer::run::setup::{RunSetup, sample_fresh};
use treepo_trainer::train::{AdamW, TrainError, Trainer};

/// A small parity-cot run: 8 queries of 6 bits, a C = 32 model, trees of width 4, rewards
/// shaped by length.
fn config(extra: &str) -> RunConfig {
    let text = format!(
        r#"
[run]
seed = 3
kv_pages = 1024
[task]
name = "parity-cot"
min_bits = 6
max_bits = 6
[model]
hidden_size = 32
intermediate_size = 64
layers = 2
heads = 2
kv_heads = 1
max_positions = 64
[rl]
queries_per_step = 8
mini_batches = 2
# A random model never answers right: the overlong penalty makes the rewards differ.
dynamic_sampling_rounds = -1
overlong_buffer = 8
[rl.sampler]
tree_max_depth = 3
tree_max_token_per_step = 4
tree_fixed_step_div = 2
tree_max_width = 4
max_response_length = 12
{extra}
"#
    );
    RunConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

fn setup(extra: &str) -> (RunSetup, Model) {
    RunSetup::new(config(extra), &Device::cpu()).unwrap()
}

fn trainer_of(s: &RunSetup, model: &Model) -> Trainer {
    let m =
        Model::from_params(model.device(), model.config().clone(), &model.params_host().unwrap())
            .unwrap();
    let optim = AdamW::new(&m, s.cfg.rl.optim).unwrap();
    Trainer::new(m, optim)
}

/// Step `step`'s problems sampled in `shards` slices, each with its batch offset as first id.
fn sample_shards(
    s: &RunSetup,
    model: &Model,
    settings: &RlSettings,
    step: u64,
    shards: usize,
) -> Vec<RolloutShard> {
    let problems = s.step_problems(step).unwrap();
    let per = problems.len().div_ceil(shards);
    problems
        .chunks(per)
        .enumerate()
        .map(|(i, ps)| {
            let first = (i * per) as u64;
            let tree = sample_fresh(
                model,
                s.cfg.run.kv_pages,
                &settings.sampler,
                &s.hooks,
                &s.tok,
                settings.sampling,
                ps,
                first,
            )
            .unwrap();
            RolloutShard::collect(&tree, ps, s.task.as_ref(), &s.tok, settings.overlong.as_ref(), 7)
                .unwrap()
        })
        .collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn rollouts_of(s: &RunSetup, shards: &[RolloutShard]) -> Rollouts {
    let refs: Vec<&RolloutShard> = shards.iter().collect();
    RolloutShard::to_rollouts(&refs, &s.tok).unwrap()
}

/// The shard's arrays rebuild `Rollouts::collect`'s trees and leaves (the extracted answer
/// aside), and carry the sampler's per-token log-probs.
#[test]
fn shard_round_trip() {
    let (s, model) = setup("");
    let settings = s.step_settings(0);
    let problems = s.step_problems(0).unwrap();
    let tree = sample_fresh(
        &model,
        1024,
        &settings.sampler,
        &s.hooks,
        &s.tok,
        SamplingMode::Tree,
        &problems,
        0,
    )
    .unwrap();
    let direct = Rollouts::collect(&tree, &problems, s.task.as_ref(), &s.tok, None).unwrap();
    let shard = RolloutShard::collect(&tree, &problems, s.task.as_ref(), &s.tok, None, 5).unwrap();
    shard.validate().unwrap();
    assert_eq!(shard.policy_version, 5);
    assert_eq!(shard.tokens_decoded, tree.cost().tokens_decoded as u64);
    let back = RolloutShard::to_rollouts(&[&shard], &s.tok).unwrap();
    assert_eq!(back.trees, direct.trees);
    assert_eq!(back.leaves.len(), direct.leaves.len());
    assert!(direct.leaves.len() >= 8, "{} leaves", direct.leaves.len());
    for (a, b) in back.leaves.iter().zip(&direct.leaves) {
        assert_eq!(
            (a.query, &a.path, &a.response, &a.text),
            (b.query, &b.path, &b.response, &b.text)
        );
        assert_eq!((a.reason, a.reward, a.score.reward), (b.reason, b.reward, b.score.reward));
        assert_eq!((a.score.correct, a.score.well_formed), (b.score.correct, b.score.well_formed));
    }
    // Log-probs: NaN on prompt tokens, finite and <= 0 on sampled ones.
    for q in 0..shard.num_queries() {
        let prompt = shard.node_ptr[q] as usize;
        for t in shard.token_ptr[prompt]..shard.token_ptr[prompt + 1] {
            assert!(shard.logprobs[t as usize].is_nan());
        }
    }
    let sampled = shard.logprobs.iter().filter(|x| !x.is_nan()).count();
    assert!(sampled > 0 && shard.logprobs.iter().filter(|x| !x.is_nan()).all(|&x| x <= 0.0));
}

/// Two workers sampling halves of a step (with their offsets as query ids) return the trees the
/// whole batch gets: the shards concatenate to the single-process batch.
#[test]
fn shards_draw_the_whole_batch() {
    let (s, model) = setup("");
    let settings = s.step_settings(1);
    let whole = rollouts_of(&s, &sample_shards(&s, &model, &settings, 1, 1));
    let halves = rollouts_of(&s, &sample_shards(&s, &model, &settings, 1, 2));
    assert_eq!(halves.trees, whole.trees);
    assert_eq!(halves.leaves, whole.leaves);
}

/// With one rank the data-parallel update is `rl_iteration`'s, bit for bit.
#[test]
fn one_rank_is_rl_iteration() {
    let (s, model) = setup("");
    let settings = s.step_settings(0);
    let mut single = trainer_of(&s, &model);
    let mut sample = |m: &Model, cfg: &treepo_sampler::TreeConfig, mode: SamplingMode, ps: &[_]| {
        sample_fresh(m, s.cfg.run.kv_pages, cfg, &s.hooks, &s.tok, mode, ps, 0)
    };
    let problems = s.step_problems(0).unwrap();
    let stats = pipeline::rl_iteration(
        &mut single,
        &mut sample,
        s.task.as_ref(),
        &s.tok,
        &settings,
        || Ok(problems.clone()),
    )
    .unwrap();
    assert!(stats.updated);

    let mut dp = trainer_of(&s, &model);
    let rollouts = rollouts_of(&s, &sample_shards(&s, &model, &settings, 0, 1));
    let up = update_local(&mut dp, &rollouts, &settings, 1).unwrap();
    assert_eq!(up.steps.len(), 2);
    assert_eq!(dp.model.params_host().unwrap(), single.model.params_host().unwrap());
    assert_eq!(dp.optim.state(dp.device()).unwrap(), single.optim.state(single.device()).unwrap());
}

/// Two and three ranks: the advantages are the whole batch's (not each slice's own), the summed
/// gradient is the one-rank gradient to rounding, and so are the weights after the step.
#[test]
fn ranks_sum_to_the_whole_batch() {
    let (s, model) = setup("");
    let settings = s.step_settings(2);
    let rollouts = rollouts_of(&s, &sample_shards(&s, &model, &settings, 2, 2));
    let whole = compute_leaf_advantages(&settings.advantage, &rollouts.leaf_records()).unwrap();
    let mut one = trainer_of(&s, &model);
    let base = update_local(&mut one, &rollouts, &settings, 1).unwrap();
    assert_eq!(base.advantages, whole);
    assert!(whole.iter().filter(|a| **a != 0.0).count() > whole.len() / 2, "{whole:?}");
    assert!(base.grads.iter().all(|g| g.iter().any(|x| *x != 0.0)));
    for world in [2, 3] {
        let mut t = trainer_of(&s, &model);
        for rank in 0..world {
            let r = RankUpdate::prepare(&mut t, &rollouts, &settings, rank, world).unwrap();
            assert_eq!(r.advantages, whole, "rank {rank} of {world}");
        }
        let up = update_local(&mut t, &rollouts, &settings, world).unwrap();
        let tol = Tol { atol: 1e-6, rtol: 1e-4 };
        for (mb, (g, g1)) in up.grads.iter().zip(&base.grads).enumerate() {
            assert_close(&format!("world {world} mini-batch {mb} gradient"), g, &f64s(g1), tol);
        }
        assert!(
            (up.stats.pg_loss - base.stats.pg_loss).abs() < 1e-9 + 1e-6 * base.stats.pg_loss.abs()
        );
        assert_eq!(up.stats.num_tokens, base.stats.num_tokens);
        assert_close(
            &format!("world {world} weights"),
            &t.model.params_host().unwrap(),
            &f64s(&one.model.params_host().unwrap()),
            Tol { atol: 1e-6, rtol: 1e-5 },
        );
    }
    // Whitening per slice would give other advantages: the test above can tell them apart.
    let mut half = rollouts.clone();
    half.retain_queries(|q| q < rollouts.trees.len() / 2);
    let local = compute_leaf_advantages(&settings.advantage, &half.leaf_records()).unwrap();
    assert_ne!(local[..], whole[..local.len()]);
}

/// Misuse is a typed error: a rank outside the world, an edge-level estimator, a malformed
/// shard, a gradient of the wrong size, a non-finite gradient (weights untouched).
#[test]
fn misuse_is_a_typed_error() {
    let (s, model) = setup("");
    let settings = s.step_settings(0);
    let shards = sample_shards(&s, &model, &settings, 0, 1);
    let rollouts = rollouts_of(&s, &shards);
    let mut t = trainer_of(&s, &model);
    let e = RankUpdate::prepare(&mut t, &rollouts, &settings, 2, 2).unwrap_err();
    assert!(e.to_string().contains("rank 2 of 2"), "{e}");
    let mut edge = settings.clone();
    edge.advantage.estimator = AdvantageEstimator::TreeGrpo;
    let e = RankUpdate::prepare(&mut t, &rollouts, &edge, 0, 1).unwrap_err();
    assert!(e.to_string().contains("edge-level"), "{e}");

    let mut bad = shards[0].clone();
    bad.parent[1] = 5;
    let e = RolloutShard::to_rollouts(&[&bad], &s.tok).unwrap_err();
    assert!(e.to_string().contains("parent"), "{e}");
    let mut bad = shards[0].clone();
    bad.reward.pop();
    assert!(RolloutShard::to_rollouts(&[&bad], &s.tok).unwrap_err().to_string().contains("reward"));
    let mut bad = shards[0].clone();
    *bad.token_ptr.last_mut().unwrap() += 1;
    assert!(matches!(RolloutShard::to_rollouts(&[&bad], &s.tok), Err(TrainError::Batch(_))));

    let before = t.model.params_host().unwrap();
    let n = before.len();
    assert!(apply_gradient(&mut t, &vec![0.0; n - 1]).is_err());
    let mut g = vec![0.0f32; n];
    g[n / 2] = f32::NAN;
    assert!(matches!(apply_gradient(&mut t, &g), Err(TrainError::NonFinite { .. })));
    assert_eq!(t.model.params_host().unwrap(), before);
    assert!(sum_in_rank_order(&[&[1.0, 2.0], &[1.0]]).is_err());
    assert!(sum_in_rank_order(&[]).is_err());
}

/// The run's SFT phase through `RunSetup::sft` leaves an RL optimizer and moves the weights;
/// `model.path` loads a saved model.
#[test]
fn setup_sft_and_settings() {
    let (s, model) = setup("[sft]\nsteps = 3\nbatch_size = 4\n");
    let mut t = trainer_of(&s, &model);
    let mut losses = Vec::new();
    s.sft(&mut t, |_, r| losses.push(r.loss)).unwrap();
    assert_eq!(losses.len(), 3);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert_eq!(t.optim.steps(), 0);
    assert_ne!(t.model.params_host().unwrap(), model.params_host().unwrap());
    assert_ne!(s.step_settings(0).sampler.seed, s.step_settings(1).sampler.seed);
    assert_eq!(s.step_problems(1).unwrap()[0].index, s.step_problems(0).unwrap()[7].index + 1);
    // `model.path` starts from that checkpoint (weights and tokenizer); a missing one is a
    // typed error naming the key.
    let dir = std::env::temp_dir().join(format!("treepo-dist-ckpt-{}", std::process::id()));
    t.model.save(&dir, &s.tok).unwrap();
    let mut cfg = config("");
    cfg.model.path = Some(dir.clone());
    let (s2, loaded) = RunSetup::new(cfg, &Device::cpu()).unwrap();
    assert_eq!(loaded.params_host().unwrap(), t.model.params_host().unwrap());
    assert_eq!(s2.tok.vocab_size(), s.tok.vocab_size());
    std::fs::remove_dir_all(&dir).unwrap();
    let mut cfg = config("");
    cfg.model.path = Some(dir);
    let e = RunSetup::new(cfg, &Device::cpu()).err().unwrap();
    assert!(e.to_string().contains("model.path") && e.to_string().contains("no such"), "{e}");
}
