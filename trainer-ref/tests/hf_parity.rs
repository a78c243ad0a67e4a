//! Our forward pass reproduces Hugging Face's logits on tiny random Qwen2 and Llama models
//! (tied and untied embeddings, GQA, Qwen2 biases, Llama-3 RoPE scaling), on every backend.
//! Fixtures come from `scripts/make_hf_fixtures.py` (committed; PyTorch is not needed here).

use std::path::Path;

use treepo_kernels::testing::{Tol, assert_close};
use treepo_kernels::{Device, per_backend};
use treepo_trainer::model::{Activations, Model, PackedBatch};

const CASES: [&str; 4] = ["qwen2-tied", "qwen2-untied", "llama-gqa", "llama3-scaled"];

fn expected(dir: &Path) -> (Vec<u32>, Vec<f32>) {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let ids: Vec<u32> = ids
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect();
    let logits = st.tensor("logits").unwrap();
    let logits: Vec<f32> =
        logits.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (ids, logits)
}

fn matches_hf_logits(dev: &Device) {
    for case in CASES {
        let dir = Path::new("tests/fixtures/hf").join(case);
        let model = Model::load(dev, &dir).unwrap();
        let (ids, want) = expected(&dir);
        let batch = PackedBatch::causal(dev, model.config(), &ids).unwrap();
        let mut acts = Activations::new(dev, model.config(), ids.len()).unwrap();
        model.forward(&batch, &mut acts).unwrap();
        let got = dev.download(acts.logits()).unwrap();
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        let err = assert_close(
            &format!("{case} logits on {}", dev.kind()),
            &got,
            &want,
            Tol { atol: 1e-4, rtol: 1e-4 },
        );
        eprintln!("{case}: max |logit error| {err:e}");
    }
}

per_backend!(matches_hf_logits);
