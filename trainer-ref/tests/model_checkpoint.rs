//! Config, parameter layout, checkpoints and tokenizers: HF names, round trips, and every
//! malformed input as a typed error naming the field or tensor.

use std::path::PathBuf;

use treepo_trainer::model::{
    CharTokenizer, ModelConfig, ModelError, ModelType, ParamLayout, Tokenizer, load_weights, save,
    write_atomic,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-model-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small(tied: bool, model_type: ModelType) -> ModelConfig {
    ModelConfig { vocab_size: 21, ..crate::common::tiny_config(tied, model_type) }
}

#[test]
fn layout_uses_hf_names_and_adds_up() {
    let cfg = small(false, ModelType::Qwen2);
    let lay = ParamLayout::new(&cfg);
    let names: Vec<&str> = lay.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "model.embed_tokens.weight");
    assert!(names.contains(&"model.layers.1.self_attn.q_proj.bias"));
    assert!(names.contains(&"model.layers.0.mlp.down_proj.weight"));
    assert_eq!(*names.last().unwrap(), "lm_head.weight");
    let per_layer = 16 + (16 + 8 + 8) * 16 + (16 + 8 + 8) + 16 * 16 + 16 + 2 * 24 * 16 + 16 * 24;
    assert_eq!(lay.total, 21 * 16 + 2 * per_layer + 16 + 21 * 16);
    // q, k, v are adjacent so one GEMM computes the fused projection.
    let l0 = &lay.layers[0];
    assert_eq!(l0.wqkv.len(), (16 + 8 + 8) * 16);
    assert_eq!(
        lay.get("model.layers.0.self_attn.q_proj.weight").unwrap().range.start,
        l0.wqkv.start
    );
    // Norms and biases are not decayed.
    let mask = lay.decay_mask();
    assert!(!mask[l0.ln1.start] && mask[l0.wqkv.start] && !mask[l0.bqkv.clone().unwrap().start]);
    let tied = ParamLayout::new(&small(true, ModelType::Llama));
    assert_eq!(tied.lm_head, tied.embed);
    assert!(tied.get("lm_head.weight").is_none() && tied.layers[0].bqkv.is_none());
}

#[test]
fn config_json_round_trips() {
    for (tied, ty) in [(true, ModelType::Qwen2), (false, ModelType::Llama)] {
        let mut cfg = small(tied, ty);
        cfg.eos_token_ids = vec![1, 2];
        let back = ModelConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(back, cfg);
    }
}

#[test]
fn config_errors_name_the_field() {
    let cfg = small(true, ModelType::Qwen2);
    let json = cfg.to_json();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("model_type", "gpt2".into(), "`gpt2` is not supported"),
        ("num_key_value_heads", 3.into(), "does not divide"),
        ("hidden_act", "gelu".into(), "`gelu` is not supported"),
        ("vocab_size", "many".into(), "missing or not an integer"),
        ("use_sliding_window", true.into(), "sliding-window"),
    ];
    for (field, value, msg) in cases {
        let mut bad = v.clone();
        bad[field] = value;
        let err = ModelConfig::from_json(&bad.to_string()).unwrap_err();
        assert!(matches!(&err, ModelError::Config { .. }), "{err}");
        assert!(err.to_string().contains(msg), "{field}: {err}");
    }
    v.as_object_mut().unwrap().remove("hidden_size");
    assert!(
        ModelConfig::from_json(&v.to_string()).unwrap_err().to_string().contains("hidden_size")
    );
    assert!(ModelConfig::from_json("{not json").is_err());
}

#[test]
fn checkpoint_round_trip_and_errors() {
    let cfg = small(false, ModelType::Qwen2);
    let lay = ParamLayout::new(&cfg);
    let params: Vec<f32> = (0..lay.total).map(|i| (i as f32 * 0.37).sin()).collect();
    let dir = tmpdir("roundtrip");
    save(&dir, &cfg, &lay, &params).unwrap();
    let loaded_cfg = ModelConfig::load(&dir).unwrap();
    assert_eq!(loaded_cfg, cfg);
    assert_eq!(load_weights(&dir, &cfg, &lay).unwrap(), params);

    // A config that does not match the weights names the tensor.
    let mut wider = cfg.clone();
    wider.intermediate_size = 32;
    let err = load_weights(&dir, &wider, &ParamLayout::new(&wider)).unwrap_err();
    assert!(
        err.to_string().contains(".mlp.") && err.to_string().contains("but the config expects"),
        "{err}"
    );
    // A tied config sees an lm_head it ignores; a model without biases sees unexpected biases.
    let mut llama = cfg.clone();
    llama.model_type = ModelType::Llama;
    llama.attention_bias = false;
    let err = load_weights(&dir, &llama, &ParamLayout::new(&llama)).unwrap_err();
    assert!(
        err.to_string().contains("_proj.bias") && err.to_string().contains("not part of"),
        "{err}"
    );
    // Missing tensor.
    let mut deeper = cfg.clone();
    deeper.num_hidden_layers = 3;
    let err = load_weights(&dir, &deeper, &ParamLayout::new(&deeper)).unwrap_err();
    assert!(
        err.to_string().contains("model.layers.2.") && err.to_string().contains("missing"),
        "{err}"
    );
    // Corrupt file.
    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    let err = load_weights(&dir, &cfg, &lay).unwrap_err();
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
    // Missing directory contents.
    let empty = tmpdir("empty");
    assert!(
        load_weights(&empty, &cfg, &lay)
            .unwrap_err()
            .to_string()
            .contains("neither model.safetensors")
    );
}

#[test]
fn sharded_checkpoints_load() {
    let cfg = small(true, ModelType::Llama);
    let lay = ParamLayout::new(&cfg);
    let params: Vec<f32> = (0..lay.total).map(|i| i as f32 / 7.0).collect();
    let one = tmpdir("one");
    save(&one, &cfg, &lay, &params).unwrap();
    // Split the single file into two shards by re-serializing halves of the tensors.
    let bytes = std::fs::read(one.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    let dir = tmpdir("sharded");
    let mut map = serde_json::Map::new();
    for (i, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> =
            chunk.iter().map(|n| (n.clone(), st.tensor(n).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).unwrap();
        for n in chunk {
            map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    write_atomic(&dir.join("model.safetensors.index.json"), index.to_string().as_bytes()).unwrap();
    assert_eq!(load_weights(&dir, &cfg, &lay).unwrap(), params);
}

#[test]
fn char_tokenizer_round_trips_and_checks_the_model() {
    let tok = Tokenizer::Char(CharTokenizer::new("_#0123456789+-*/=,>:A").unwrap());
    let ids = tok.encode("7,3>10:").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "7,3>10:");
    assert_eq!(tok.token_id("#"), Some(1));
    assert!(tok.encode("x").unwrap_err().to_string().contains("'x' is not in the vocabulary"));
    assert!(tok.decode(&[99]).unwrap_err().to_string().contains("id 99"));
    assert!(CharTokenizer::new("aa").unwrap_err().to_string().contains("appears twice"));
    let dir = tmpdir("tok");
    tok.save(&dir).unwrap();
    let back = Tokenizer::load(&dir, 21).unwrap();
    assert_eq!(back.encode("12").unwrap(), tok.encode("12").unwrap());
    let err = Tokenizer::load(&dir, 10).unwrap_err();
    assert!(err.to_string().contains("do not belong together"), "{err}");
    assert!(Tokenizer::load(&tmpdir("notok"), 10).unwrap_err().to_string().contains("has neither"));
}
