//! A pinned loss trajectory, computed independently by PyTorch (`scripts/make_hf_fixtures.py`):
//! 10 AdamW steps of SFT from a fixed random Qwen2 model on the leaves of two rollout trees
//! (warm-up + cosine schedule, decay on matrices only, global clipping). Our trainer must follow
//! it step by step — packed as trees (shared prefixes once) and per leaf, on every backend. Like
//! llm.c's test, this catches optimizer and schedule bugs, not only gradient bugs.

use std::path::Path;

use serde_json::Value;
use treepo_kernels::{Device, per_backend};
use treepo_trainer::model::Model;
use treepo_trainer::train::{
    AdamW, LrSchedule, OptimConfig, TrainBatch, Trainer, TreeNodeSpec, TreeSpec,
};

fn fixture() -> (Vec<TreeSpec>, OptimConfig, Vec<f64>) {
    let text = std::fs::read_to_string("tests/fixtures/trajectory/trajectory.json").unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let trees = v["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| TreeSpec {
            nodes: t["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| TreeNodeSpec {
                    parent: n[0].as_u64().map(|p| p as usize),
                    tokens: n[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as u32)
                        .collect(),
                })
                .collect(),
            leaves: t["leaves"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect(),
        })
        .collect();
    let o = &v["optimizer"];
    let f = |k: &str| o[k].as_f64().unwrap();
    let cfg = OptimConfig {
        lr: f("lr"),
        beta1: f("beta1"),
        beta2: f("beta2"),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        grad_clip: f("grad_clip"),
        warmup_steps: o["warmup_steps"].as_u64().unwrap(),
        schedule: LrSchedule::Cosine {
            total_steps: o["total_steps"].as_u64().unwrap(),
            min_lr: f("min_lr"),
        },
    };
    let losses = v["losses"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    (trees, cfg, losses)
}

fn follows_pytorch(dev: &Device) {
    let (trees, cfg, want) = fixture();
    let packed = TrainBatch::from_trees(&trees).unwrap();
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = trees
        .iter()
        .flat_map(|t| {
            t.leaves.iter().map(move |&leaf| {
                let mut chain = vec![leaf];
                while let Some(p) = t.nodes[*chain.last().unwrap()].parent {
                    chain.push(p);
                }
                let resp: Vec<u32> =
                    chain.iter().rev().skip(1).flat_map(|&n| t.nodes[n].tokens.clone()).collect();
                (t.nodes[0].tokens.clone(), resp)
            })
        })
        .collect();
    let refs: Vec<(&[u32], &[u32])> =
        seqs.iter().map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
    let flat = TrainBatch::from_sequences(&refs).unwrap();
    for (name, batch) in [("packed", &packed), ("per-leaf", &flat)] {
        let model = Model::load(dev, Path::new("tests/fixtures/trajectory")).unwrap();
        let optim = AdamW::new(&model, cfg).unwrap();
        let mut tr = Trainer::new(model, optim);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            got.push(tr.sft_step(batch).unwrap().loss);
        }
        eprintln!("{name} on {}: {got:?}", dev.kind());
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{name} step {}: loss {g} vs PyTorch {w}",
                i + 1
            );
        }
    }
}

per_backend!(follows_pytorch);
