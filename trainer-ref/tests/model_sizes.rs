//! Hostile model sizes (issue 13, item 7): every size field at 0, 2^31, 2^40, 2^62 and
//! `usize::MAX`, through HF `config.json`, a `ModelConfig` built in code (what a TOML run config
//! builds) and a TOML `[model]` section: each is a typed error naming the field, refused before
//! anything is allocated — never a panic, an overflow or an allocation abort.

use std::path::{Path, PathBuf};

use treepo_kernels::Device;
use treepo_trainer::model::{
    Model, ModelConfig, ModelError, ModelType, ParamLayout, load_weights, save,
};
use treepo_trainer::run::RunConfig;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-sizes-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const FIELDS: [&str; 8] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
];

const HOSTILE: [u64; 5] = [0, 1 << 31, 1 << 40, 1 << 62, u64::MAX];

/// A small valid Qwen2 `config.json` with `field` set to `value`.
fn config_json(field: &str, value: u64) -> String {
    let mut v = serde_json::json!({
        "model_type": "qwen2", "vocab_size": 11, "hidden_size": 16, "intermediate_size": 24,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 4, "max_position_embeddings": 64, "tie_word_embeddings": true,
    });
    v[field] = value.into();
    v.to_string()
}

fn set(cfg: &mut ModelConfig, field: &str, value: usize) {
    match field {
        "vocab_size" => cfg.vocab_size = value,
        "hidden_size" => cfg.hidden_size = value,
        "intermediate_size" => cfg.intermediate_size = value,
        "num_hidden_layers" => cfg.num_hidden_layers = value,
        "num_attention_heads" => cfg.num_attention_heads = value,
        "num_key_value_heads" => cfg.num_key_value_heads = value,
        "head_dim" => cfg.head_dim = value,
        "max_position_embeddings" => cfg.max_position_embeddings = value,
        _ => unreachable!(),
    }
}

/// The shared tiny model with a short context.
fn small() -> ModelConfig {
    let mut c = crate::common::tiny_config(true, ModelType::Qwen2);
    c.max_position_embeddings = 64;
    c
}

/// The error must be `Config` naming `field`, and (for a non-zero value) quote the value.
fn assert_names(err: ModelError, field: &str, value: u64, what: &str) {
    match err {
        ModelError::Config { field: f, msg } => {
            assert_eq!(f, field, "{what}: wrong field in `{msg}`");
            if value > 0 && field != "num_key_value_heads" {
                assert!(msg.contains(&value.to_string()), "{what}: value missing from `{msg}`");
            }
        }
        other => panic!("{what}: expected a config error naming {field}, got {other}"),
    }
}

#[test]
fn hostile_sizes_in_config_json_are_typed_errors() {
    let dir = tmpdir("json");
    let mut tried = 0;
    for field in FIELDS {
        for value in HOSTILE {
            let text = config_json(field, value);
            let what = format!("config.json {field} = {value}");
            tried += 1;
            // Checked first: before the fix several of these were accepted, and loading them
            // would have aborted on allocation.
            let err = ModelConfig::from_json(&text).expect_err(&what);
            assert_names(err, field, value, &what);
            // The whole HF load path (config.json, then weights) refuses it the same way.
            std::fs::write(dir.join("config.json"), &text).unwrap();
            let err = Model::load(&Device::cpu(), &dir).err().expect(&what);
            assert_names(err, field, value, &what);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("hostile config.json sizes tried: {tried}");
}

#[test]
fn hostile_sizes_in_a_model_config_are_typed_errors() {
    let mut tried = 0;
    for field in FIELDS {
        for value in HOSTILE {
            let mut cfg = small();
            set(&mut cfg, field, value as usize);
            let what = format!("ModelConfig {field} = {value}");
            tried += 1;
            // Checked first: before the fix validate() accepted these and Model::random panicked
            // (capacity / multiply overflow) or aborted on allocation.
            assert_names(cfg.validate().expect_err(&what), field, value, &what);
            if value > 0 && field != "num_key_value_heads" {
                assert_names(ParamLayout::try_new(&cfg).expect_err(&what), field, value, &what);
            }
            let err = Model::random(&Device::cpu(), cfg, 0).err().expect(&what);
            assert_names(err, field, value, &what);
        }
    }
    eprintln!("hostile ModelConfig sizes tried: {tried}");
}

#[test]
fn hostile_sizes_in_a_toml_model_section_are_typed_errors() {
    // TOML integers are i64: usize::MAX does not parse (a typed parse error), i64::MAX does.
    let keys = [
        ("hidden_size", "hidden_size"),
        ("intermediate_size", "intermediate_size"),
        ("layers", "num_hidden_layers"),
        ("heads", "heads"),
        ("kv_heads", "num_key_value_heads"),
        ("max_positions", "max_position_embeddings"),
    ];
    let mut tried = 0;
    for (key, named) in keys {
        for value in [0u64, 1 << 31, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX] {
            let text = format!("[model]\n{key} = {value}\n");
            tried += 1;
            let err = match RunConfig::from_toml(&text, Path::new("hostile.toml")) {
                Err(e) => e.to_string(),
                // What the run does before building the model (`common::model`).
                Ok(cfg) => cfg.model.config(11).expect_err(&text).to_string(),
            };
            assert!(
                err.contains(named) || err.contains(key) || err.contains("hostile.toml"),
                "[model] {key} = {value}: `{err}` names neither the key nor the file"
            );
        }
    }
    eprintln!("hostile TOML sizes tried: {tried}");
}

#[test]
fn too_large_model_error_says_what_it_would_need() {
    let mut cfg = small();
    cfg.hidden_size = 1 << 30;
    cfg.head_dim = 1 << 28;
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(msg.contains("hidden_size = 1073741824"), "{msg}");
    assert!(msg.contains("refusing before allocating"), "{msg}");
    let mut cfg = small();
    cfg.num_hidden_layers = ModelConfig::MAX_LAYERS + 1;
    assert_names(cfg.validate().unwrap_err(), "num_hidden_layers", 4097, "layers");
    // Just under the parameter cap is fine for check_sizes (the memory check is separate).
    let mut cfg = small();
    cfg.vocab_size = 1 << 20;
    cfg.hidden_size = 1 << 15;
    cfg.num_hidden_layers = 1;
    cfg.intermediate_size = 1;
    cfg.num_attention_heads = 1;
    cfg.num_key_value_heads = 1;
    cfg.head_dim = 2;
    assert!(cfg.check_sizes().unwrap() < ModelConfig::MAX_PARAMS);
    cfg.vocab_size = 1 << 21;
    assert_names(cfg.check_sizes().unwrap_err(), "vocab_size", 1 << 21, "vocab");
}

#[test]
fn check_sizes_counts_exactly_the_layout() {
    for (tied, ty) in
        [(true, ModelType::Qwen2), (false, ModelType::Llama), (false, ModelType::Qwen2)]
    {
        let mut cfg = small();
        cfg.tie_word_embeddings = tied;
        cfg.model_type = ty;
        cfg.attention_bias = ty == ModelType::Qwen2;
        for (c, i, l, h, kvh, hd, v) in
            [(16, 24, 2, 4, 2, 4, 11), (96, 256, 3, 4, 2, 24, 40), (8, 1, 7, 8, 1, 2, 1000)]
        {
            cfg.hidden_size = c;
            cfg.intermediate_size = i;
            cfg.num_hidden_layers = l;
            cfg.num_attention_heads = h;
            cfg.num_key_value_heads = kvh;
            cfg.head_dim = hd;
            cfg.vocab_size = v;
            cfg.validate().unwrap();
            assert_eq!(cfg.check_sizes().unwrap(), ParamLayout::new(&cfg).total, "{cfg:?}");
        }
    }
}

#[test]
fn load_weights_refuses_a_layout_that_is_not_the_configs() {
    // Before: the buffer was sized by the layout given and indexed by its ranges — a layout
    // whose ranges run past its total (an overflowed one) panicked at the index.
    let cfg = small();
    let lay = ParamLayout::new(&cfg);
    let dir = tmpdir("layout");
    save(&dir, &cfg, &lay, &vec![0.5; lay.total]).unwrap();
    let mut bad = lay.clone();
    bad.total = 5;
    match load_weights(&dir, &cfg, &bad) {
        Err(ModelError::Checkpoint { msg, .. }) => assert!(msg.contains("layout"), "{msg}"),
        other => panic!("{:?}", other.map(|p| p.len())),
    }
    assert_eq!(load_weights(&dir, &cfg, &lay).unwrap().len(), lay.total);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_ids_that_do_not_fit_u32_are_errors_not_truncated() {
    // Before: 2^32 + 1 was truncated to 1, a valid id.
    for key in ["eos_token_id", "bos_token_id"] {
        let mut v: serde_json::Value =
            serde_json::from_str(&config_json("vocab_size", 11)).unwrap();
        v[key] = (u64::from(u32::MAX) + 2).into();
        match ModelConfig::from_json(&v.to_string()) {
            Err(ModelError::Config { field, msg }) => {
                assert_eq!(field, key, "{msg}");
                assert!(msg.contains("4294967297"), "{msg}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}
