//! The model's hyper-parameters, read from and written to Hugging Face `config.json`.
//!
//! Only the fields a Qwen2/Llama decoder needs are read; anything the forward pass cannot honour
//! (another activation, sliding-window attention, an unknown RoPE scaling) is a typed error
//! naming the field, never silently ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ModelError;

/// The architecture family; decides HF names and defaults (Qwen2 has q/k/v biases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// `Qwen2ForCausalLM`.
    Qwen2,
    /// `LlamaForCausalLM`.
    Llama,
}

impl ModelType {
    /// The HF `architectures` entry.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelType::Qwen2 => "Qwen2ForCausalLM",
            ModelType::Llama => "LlamaForCausalLM",
        }
    }
}

/// RoPE frequency scaling (HF `rope_scaling`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RopeScalingConfig {
    /// Llama-3's piecewise scaling.
    Llama3 {
        /// `factor`.
        factor: f32,
        /// `low_freq_factor`.
        low_freq_factor: f32,
        /// `high_freq_factor`.
        high_freq_factor: f32,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: usize,
    },
}

/// `n` as `2^k` when it is a power of two, else `n` (for size messages).
fn pow2_or_plain(n: u128) -> String {
    if n.is_power_of_two() { format!("2^{}", n.trailing_zeros()) } else { n.to_string() }
}

/// The machine's physical memory in bytes, as `/proc/meminfo` reports it (`None` elsewhere or
/// when unreadable: the check is then skipped).
fn physical_memory_bytes() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Decoder hyper-parameters (HF names).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub model_type: ModelType,
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Model width C.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers L.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA; divides `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// Per-head width (`hidden_size / num_attention_heads` unless given).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base θ.
    pub rope_theta: f32,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScalingConfig>,
    /// `lm_head` shares `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2: true; Llama: `attention_bias`).
    pub attention_bias: bool,
    /// Longest sequence the model is meant for.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (a set: instruct models have several).
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// The most f32 parameters a configuration may describe: 2^36 (256 GiB). Far above what the
    /// reference trainer is for, and far below where the layout's `usize` arithmetic could
    /// overflow; [`Self::validate`] refuses larger models before anything is allocated.
    pub const MAX_PARAMS: usize = 1 << 36;
    /// The most decoder layers (the largest released models have under 200): the layout keeps a
    /// dozen named tensors per layer, so a layer count is also a metadata size.
    pub const MAX_LAYERS: usize = 1 << 12;
    /// The largest single dimension (vocabulary, widths, heads, positions): `i32::MAX`, because
    /// the kernels' sizes, token ids and positions are 32-bit.
    pub const MAX_DIM: usize = i32::MAX as usize;

    /// A small from-scratch model for the synthetic tasks.
    pub fn tiny(vocab_size: usize) -> Self {
        ModelConfig {
            model_type: ModelType::Qwen2,
            vocab_size,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 32,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            attention_bias: true,
            max_position_embeddings: 512,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }

    /// Checks the invariants the kernels rely on.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, msg: String| Err(ModelError::Config { field, msg });
        for (field, v) in self.size_fields() {
            if v == 0 {
                return bad(field, "must be > 0".into());
            }
        }
        self.check_sizes()?;
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads = {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", format!("{} must be even for RoPE", self.head_dim));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return bad("rms_norm_eps", format!("{} must be finite and > 0", self.rms_norm_eps));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad("rope_theta", format!("{} must be finite and > 1", self.rope_theta));
        }
        if self.model_type == ModelType::Qwen2 && !self.attention_bias {
            return bad(
                "attention_bias",
                "Qwen2 always has q/k/v biases; use model_type llama".into(),
            );
        }
        if let Some(&id) = self.eos_token_ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return bad(
                "eos_token_id",
                format!("{id} is outside the vocabulary of {}", self.vocab_size),
            );
        }
        if let Some(id) = self.bos_token_id.filter(|&id| id as usize >= self.vocab_size) {
            return bad(
                "bos_token_id",
                format!("{id} is outside the vocabulary of {}", self.vocab_size),
            );
        }
        self.check_memory()
    }

    /// The size checks of [`Self::validate`] that do not depend on the machine: every dimension
    /// at most [`Self::MAX_DIM`], at most [`Self::MAX_LAYERS`] layers, and at most
    /// [`Self::MAX_PARAMS`] parameters
    /// (counted exactly, in `u128`). Returns the parameter count ([`super::ParamLayout`]'s
    /// `total`). Errors name the field and its value and say that nothing was allocated.
    pub fn check_sizes(&self) -> Result<usize, ModelError> {
        for (field, v) in self.size_fields() {
            if v > Self::MAX_DIM {
                return Err(ModelError::Config {
                    field,
                    msg: format!(
                        "{field} = {v} is above the largest supported dimension 2^31 − 1 \
                         (kernel sizes, token ids and positions are 32-bit); refusing before \
                         allocating"
                    ),
                });
            }
        }
        if self.num_hidden_layers > Self::MAX_LAYERS {
            return Err(ModelError::Config {
                field: "num_hidden_layers",
                msg: format!(
                    "num_hidden_layers = {} is above the supported {}; refusing before allocating",
                    self.num_hidden_layers,
                    Self::MAX_LAYERS
                ),
            });
        }
        let total = self.param_count_u128();
        if total > Self::MAX_PARAMS as u128 {
            let (field, value) = self.largest_size_factor();
            return Err(ModelError::Config {
                field,
                msg: format!(
                    "{field} = {value}: the parameters would need {} f32 values ({} bytes), \
                     above the supported 2^36 values (256 GiB); refusing before allocating",
                    pow2_or_plain(total),
                    pow2_or_plain(total * 4)
                ),
            });
        }
        // Fits: total ≤ 2^36.
        Ok(total as usize)
    }

    /// [`Self::check_sizes`], then the parameters (4 bytes each) must fit in the machine's
    /// physical memory as `/proc/meminfo` reports it (training needs about four times that:
    /// weights, gradients and two optimizer moments; checked where it is allocated).
    fn check_memory(&self) -> Result<(), ModelError> {
        let bytes = self.check_sizes()? as u128 * 4;
        match physical_memory_bytes() {
            Some(mem) if bytes > mem => {
                let (field, value) = self.largest_size_factor();
                Err(ModelError::Config {
                    field,
                    msg: format!(
                        "{field} = {value}: the parameters would need {} bytes but this machine \
                         has {mem} bytes of memory; refusing before allocating",
                        pow2_or_plain(bytes)
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// The fields that size a buffer, with their values.
    fn size_fields(&self) -> [(&'static str, usize); 8] {
        [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ]
    }

    /// The parameter count of [`super::ParamLayout`], in `u128`: exact for any dimensions up to
    /// [`Self::MAX_DIM`] and layers up to [`Self::MAX_LAYERS`] (at most about 2^107), saturating beyond.
    fn param_count_u128(&self) -> u128 {
        let [v, c, i, l, h, kvh, hd] = [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
        ]
        .map(|x| x as u128);
        param_count(v, c, i, l, h * hd, kvh * hd, self.attention_bias, self.tie_word_embeddings)
    }

    /// The size field whose reduction to its minimum shrinks the parameter count the most (the
    /// one to blame for a model that is too large), with its value.
    fn largest_size_factor(&self) -> (&'static str, usize) {
        let full = self.param_count_u128();
        let mut best = ("hidden_size", self.hidden_size, 0u128);
        for (field, value) in self.size_fields() {
            let mut c = self.clone();
            match field {
                "vocab_size" => c.vocab_size = 1,
                "hidden_size" => c.hidden_size = 1,
                "intermediate_size" => c.intermediate_size = 1,
                "num_hidden_layers" => c.num_hidden_layers = 1,
                "num_attention_heads" => c.num_attention_heads = 1,
                "num_key_value_heads" => c.num_key_value_heads = 1,
                "head_dim" => c.head_dim = 2,
                _ => continue,
            }
            let saved = full.saturating_sub(c.param_count_u128());
            if saved > best.2 {
                best = (field, value, saved);
            }
        }
        (best.0, best.1)
    }

    /// Query projection width `num_attention_heads · head_dim` (a validated config cannot
    /// overflow it).
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Key (or value) projection width `num_key_value_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Parses HF `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config { field: "config.json", msg: e.to_string() })?;
        let model_type = match v.get("model_type").and_then(Value::as_str) {
            Some("qwen2") => ModelType::Qwen2,
            Some("llama") => ModelType::Llama,
            Some(other) => {
                return Err(ModelError::Config {
                    field: "model_type",
                    msg: format!("`{other}` is not supported (qwen2 or llama)"),
                });
            }
            None => return Err(ModelError::Config { field: "model_type", msg: "missing".into() }),
        };
        let usize_field = |name: &'static str| -> Result<usize, ModelError> {
            match v.get(name) {
                None | Some(Value::Null) => {
                    Err(ModelError::Config { field: name, msg: "missing or not an integer".into() })
                }
                Some(x) => x.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                    ModelError::Config {
                        field: name,
                        msg: format!("{x}: missing or not an integer (0 ..= 2^64 − 1)"),
                    }
                }),
            }
        };
        let f32_field = |name: &'static str, default: f32| -> Result<f32, ModelError> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| ModelError::Config { field: name, msg: "not a number".into() }),
            }
        };
        let bool_field = |name: &'static str, default: bool| -> Result<bool, ModelError> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| ModelError::Config { field: name, msg: "not a boolean".into() }),
            }
        };
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(ModelError::Config {
                field: "hidden_act",
                msg: format!("`{act}` is not supported (silu)"),
            });
        }
        if bool_field("use_sliding_window", false)? {
            return Err(ModelError::Config {
                field: "use_sliding_window",
                msg: "sliding-window attention is not supported".into(),
            });
        }
        if bool_field("mlp_bias", false)? {
            return Err(ModelError::Config {
                field: "mlp_bias",
                msg: "MLP biases are not supported".into(),
            });
        }
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = match v.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => usize_field("num_key_value_heads")?,
        };
        let head_dim = match v.get("head_dim") {
            None | Some(Value::Null) => hidden_size / num_attention_heads.max(1),
            Some(_) => usize_field("head_dim")?,
        };
        // transformers 5 nests RoPE settings in `rope_parameters`; 4.x uses `rope_theta` and
        // `rope_scaling` at the top level. Both are read.
        let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(t) => t.as_f64().map(|f| f as f32).ok_or(ModelError::Config {
                field: "rope_parameters",
                msg: "`rope_theta` is not a number".into(),
            })?,
            None => f32_field("rope_theta", 10_000.0)?,
        };
        let scaling = match v.get("rope_scaling").filter(|s| !s.is_null()) {
            Some(rs) => Some(rs),
            None => rope_params,
        };
        let rope_scaling = match scaling {
            None => None,
            Some(rs) => {
                let kind = rs
                    .get("rope_type")
                    .or_else(|| rs.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "llama3" => {
                        let f = |k: &'static str| {
                            rs.get(k).and_then(Value::as_f64).ok_or(ModelError::Config {
                                field: "rope_scaling",
                                msg: format!("missing `{k}`"),
                            })
                        };
                        Some(RopeScalingConfig::Llama3 {
                            factor: f("factor")? as f32,
                            low_freq_factor: f("low_freq_factor")? as f32,
                            high_freq_factor: f("high_freq_factor")? as f32,
                            original_max_position_embeddings: f("original_max_position_embeddings")?
                                as usize,
                        })
                    }
                    other => {
                        return Err(ModelError::Config {
                            field: "rope_scaling",
                            msg: format!("rope_type `{other}` is not supported (default, llama3)"),
                        });
                    }
                }
            }
        };
        if let Some(types) = v.get("layer_types").and_then(Value::as_array)
            && let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention"))
        {
            return Err(ModelError::Config {
                field: "layer_types",
                msg: format!("layer type {t} is not supported (full_attention only)"),
            });
        }
        let ids = |name: &'static str| -> Result<Vec<u32>, ModelError> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_u64().and_then(|i| u32::try_from(i).ok()).ok_or(ModelError::Config {
                            field: name,
                            msg: format!("{x} in the list is not a token id (an integer < 2^32)"),
                        })
                    })
                    .collect(),
                Some(x) => x.as_u64().and_then(|i| u32::try_from(i).ok()).map(|i| vec![i]).ok_or(
                    ModelError::Config {
                        field: name,
                        msg: format!("{x} is not a token id (an integer < 2^32)"),
                    },
                ),
            }
        };
        let cfg = ModelConfig {
            model_type,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f32_field("rms_norm_eps", 1e-6)?,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: bool_field("tie_word_embeddings", false)?,
            attention_bias: bool_field("attention_bias", model_type == ModelType::Qwen2)?,
            max_position_embeddings: match v.get("max_position_embeddings") {
                None | Some(Value::Null) => 4096,
                Some(_) => usize_field("max_position_embeddings")?,
            },
            bos_token_id: ids("bos_token_id")?.first().copied(),
            eos_token_ids: ids("eos_token_id")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ModelError::Io { path: path.clone(), source: e })?;
        Self::from_json(&text)
    }

    /// HF `config.json` text (Qwen2/Llama conventions, `torch_dtype` float32).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("architectures".into(), serde_json::json!([self.model_type.architecture()]));
        m.insert("model_type".into(), serde_json::to_value(self.model_type).unwrap_or(Value::Null));
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("hidden_size".into(), self.hidden_size.into());
        m.insert("intermediate_size".into(), self.intermediate_size.into());
        m.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        m.insert("num_attention_heads".into(), self.num_attention_heads.into());
        m.insert("num_key_value_heads".into(), self.num_key_value_heads.into());
        m.insert("head_dim".into(), self.head_dim.into());
        m.insert("hidden_act".into(), "silu".into());
        m.insert("rms_norm_eps".into(), f64::from(self.rms_norm_eps).into());
        m.insert("rope_theta".into(), f64::from(self.rope_theta).into());
        m.insert(
            "rope_scaling".into(),
            match self.rope_scaling {
                None => Value::Null,
                Some(RopeScalingConfig::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
                    serde_json::json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                        "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max_position_embeddings})
                }
            },
        );
        let mut rope_parameters = match &m["rope_scaling"] {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::from_iter([("rope_type".to_string(), Value::from("default"))]),
        };
        rope_parameters.insert("rope_theta".into(), f64::from(self.rope_theta).into());
        m.insert("rope_parameters".into(), Value::Object(rope_parameters));
        m.insert("tie_word_embeddings".into(), self.tie_word_embeddings.into());
        m.insert("attention_bias".into(), self.attention_bias.into());
        m.insert("max_position_embeddings".into(), self.max_position_embeddings.into());
        m.insert("use_sliding_window".into(), false.into());
        m.insert("torch_dtype".into(), "float32".into());
        if let Some(b) = self.bos_token_id {
            m.insert("bos_token_id".into(), b.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                m.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                m.insert("eos_token_id".into(), serde_json::json!(many));
            }
        }
        serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default()
    }
}

/// Parameters of the layout of [`super::ParamLayout::new`], in `u128` (saturating): embeddings
/// `V·C`; per layer two norms `2C`, q/k/v/o `(2·qd + 2·kvd)·C`, the q/k/v biases `qd + 2·kvd`
/// when present, the MLP `3·I·C`; the final norm `C`; an untied `lm_head` `V·C`.
#[allow(clippy::too_many_arguments)]
fn param_count(
    v: u128,
    c: u128,
    i: u128,
    layers: u128,
    qd: u128,
    kvd: u128,
    bias: bool,
    tied: bool,
) -> u128 {
    let mul = u128::saturating_mul;
    let per_layer = mul(2, c)
        .saturating_add(mul(mul(2, qd).saturating_add(mul(2, kvd)), c))
        .saturating_add(if bias { qd.saturating_add(mul(2, kvd)) } else { 0 })
        .saturating_add(mul(mul(3, i), c));
    let embed = mul(v, c);
    embed.saturating_add(mul(layers, per_layer)).saturating_add(c).saturating_add(if tied {
        0
    } else {
        embed
    })
}
