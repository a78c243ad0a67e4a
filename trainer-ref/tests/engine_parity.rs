//! The KV-cached decode path reproduces the full-sequence forward: prefill, then feeding tokens
//! one at a time (and in chunked multi-row pieces), gives `Model::forward`'s logits at every
//! position — on every backend, at the model's head size and zero-padded to 64, and on the HF
//! fixture models against Hugging Face's own logits.

use std::path::Path;

use crate::engine_common::{TOL, check_row, full_logits, random_model, small, tokens};
use treepo_kernels::testing::Tol;
use treepo_kernels::{BackendKind, Device, per_backend};
use treepo_sampler::Engine;
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::Model;

/// Prefill 5 tokens, feed 15 one by one, then 17 as one chunked multi-row extend.
fn cached_decode_matches_forward(dev: &Device) {
    let v = 29;
    cached_decode_case(dev, &random_model(dev, small(v), 11, 0.3), v);
    // One KV head: q (4 heads) and k|v (2·1 heads) differ in width, so the engine computes
    // them with two GEMMs instead of one batched launch.
    let mut one_kv = small(v);
    one_kv.num_key_value_heads = 1;
    cached_decode_case(dev, &random_model(dev, one_kv, 13, 0.3), v);
    // Wide enough that every linear weight reaches the CPU engine's panel-order threshold
    // (2^17 elements: q and k|v 512 × 256, o 256 × 512, gate/up/down 512 × 256): the weight
    // GEMM path where the CPU has AVX-512F (a CPU-only layout: the other backends skip it).
    if dev.kind() != BackendKind::Cpu {
        return;
    }
    eprintln!("weight GEMM on this CPU: {}", treepo_kernels::ops::panels_supported(dev));
    let mut wide = small(v);
    wide.hidden_size = 256;
    wide.intermediate_size = 512;
    wide.num_attention_heads = 8;
    wide.num_key_value_heads = 4;
    wide.head_dim = 64;
    cached_decode_case(dev, &random_model(dev, wide, 14, 0.05), v);
}

fn cached_decode_case(dev: &Device, model: &Model, v: usize) {
    let seq = tokens(37, v as u32, 0, 1);
    let want = full_logits(model, &seq);
    let row = |t: usize| &want[t * v..(t + 1) * v];
    let mut variants = vec![(None, 8, 256), (None, 4, 6)];
    if dev.kind() == BackendKind::Cpu {
        variants.push((Some(64), 4, 6)); // the padded path the GPU backends take
    }
    for (da, page_size, rows) in variants {
        let cfg = EngineConfig {
            num_pages: 32,
            page_size,
            max_batch_rows: rows,
            attn_head_dim: da,
            ..EngineConfig::default()
        };
        let mut e = ModelEngine::new(model, cfg).unwrap();
        let hkv = model.config().num_key_value_heads;
        let tag =
            format!("{} hkv={hkv} da={} ps={page_size} rows={rows}", dev.kind(), e.attn_head_dim());
        let root = e.prefill(&[&seq[..5]]).unwrap()[0];
        let mut worst =
            check_row(&format!("{tag} pos 4"), &e.node_logits(root).unwrap(), row(4), TOL);
        for t in 5..20 {
            e.extend(root, &seq[t..t + 1]).unwrap();
            let got = e.node_logits(root).unwrap();
            worst = worst.max(check_row(&format!("{tag} pos {t}"), &got, row(t), TOL));
        }
        e.extend(root, &seq[20..]).unwrap();
        let got = e.node_logits(root).unwrap();
        worst = worst.max(check_row(&format!("{tag} pos 36"), &got, row(36), TOL));
        assert_eq!(e.context_len(root).unwrap(), 37);
        eprintln!("{tag}: max |logit error| {worst:e}");
        e.release(root).unwrap();
        assert_eq!(e.kv_pages_in_use(), 0);
    }
}

/// Several prompts in one prefill, one of them sharing full pages with another (prefix reuse
/// inside one call), each prompt's last-row logits right.
fn batched_prefill_matches_forward(dev: &Device) {
    let v = 29;
    let model = random_model(dev, small(v), 12, 0.3);
    let a = tokens(21, v as u32, 0, 2);
    let mut b = a[..16].to_vec(); // two full pages of a
    b.extend(tokens(3, v as u32, 0, 3));
    let c = tokens(4, v as u32, 0, 4);
    let cfg = EngineConfig { num_pages: 32, page_size: 8, ..EngineConfig::default() };
    let mut e = ModelEngine::new(&model, cfg).unwrap();
    let roots = e.prefill(&[&a, &b, &c]).unwrap();
    assert_eq!(e.stats().cached_prompt_tokens, 16, "b reuses a's two full pages");
    for (i, (&root, p)) in roots.iter().zip([&a, &b, &c]).enumerate() {
        let want = full_logits(&model, p);
        let last = &want[(p.len() - 1) * v..];
        check_row(&format!("{} prompt {i}", dev.kind()), &e.node_logits(root).unwrap(), last, TOL);
    }
    // The same prompt again later reuses the cached pages and still gets the same logits.
    let again = e.prefill(&[&b]).unwrap()[0];
    let want = full_logits(&model, &b);
    check_row("cached prompt", &e.node_logits(again).unwrap(), &want[(b.len() - 1) * v..], TOL);
}

/// Hugging Face fixtures: prefill 3 ids, feed the rest one by one, compare with HF's logits.
fn hf_fixtures_match(dev: &Device) {
    for case in ["qwen2-tied", "qwen2-untied", "llama-gqa", "llama3-scaled"] {
        let dir = Path::new("tests/fixtures/hf").join(case);
        let model = Model::load(dev, &dir).unwrap();
        let (ids, want) = expected(&dir);
        let v = model.config().vocab_size;
        let cfg = EngineConfig { num_pages: 16, page_size: 4, ..EngineConfig::default() };
        let mut e = ModelEngine::new(&model, cfg).unwrap();
        let root = e.prefill(&[&ids[..3]]).unwrap()[0];
        let tol = Tol { atol: 1e-4, rtol: 1e-4 };
        let mut worst = 0f64;
        for t in 2..ids.len() {
            if t > 2 {
                e.extend(root, &ids[t..t + 1]).unwrap();
            }
            let got = e.node_logits(root).unwrap();
            let what = format!("{case} on {} pos {t}", dev.kind());
            worst = worst.max(check_row(&what, &got, &want[t * v..(t + 1) * v], tol));
        }
        eprintln!("{case} on {}: max |logit error| vs HF {worst:e}", dev.kind());
    }
}

fn expected(dir: &Path) -> (Vec<u32>, Vec<f32>) {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let ids = ids.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32);
    let logits = st.tensor("logits").unwrap();
    let logits =
        logits.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (ids.collect(), logits)
}

per_backend!(cached_decode_matches_forward, batched_prefill_matches_forward, hf_fixtures_match);
