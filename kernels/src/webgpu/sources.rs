//! The embedded `.wgsl` sources: one entry per file stem in `kernels/wgsl/`.
//!
//! **16-bit variants.** WGSL has no templates. A shader that supports f16 storage declares its
//! storage element type on one line, exactly `alias elem_t = f32;`, and converts with
//! `f32(...)`/`elem_t(...)`; [`f16_variant`] derives the f16 module by prepending
//! `enable f16;` and rewriting that line. The pipeline cache keys the variant by its own stem
//! (`<stem>_f16`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// One WGSL module.
#[derive(Debug)]
pub struct ShaderSource {
    /// File stem (`rmsnorm` for `wgsl/rmsnorm.wgsl`); `<stem>_f16` for a derived variant.
    pub stem: &'static str,
    /// The module's text.
    pub code: &'static str,
    /// Whether the module uses `enable f16;` (needs the adapter's `SHADER_F16`).
    pub needs_f16: bool,
}

/// The marker line of a shader with an f16 variant.
pub const ELEM_F32: &str = "alias elem_t = f32;";

/// Registers the `.wgsl` files. `NAME = "stem" + "shared"` prepends `wgsl/shared.wgsl` (code
/// common to several shaders, e.g. `decode_tile.wgsl`; WGSL has no includes); several headers
/// (`"stem" + "a" + "b"`) are prepended in the order given. A pipeline's bind group layout is
/// built from the bindings its entry point reaches, so a header declares only bindings that every
/// module including it uses (as `decode_tile.wgsl` does); otherwise its functions name the
/// module's own bindings (WGSL module-scope declarations are order-independent).
macro_rules! shaders {
    ($($name:ident = $stem:literal $(+ $head:literal)*),* $(,)?) => {
        $(
            #[doc = concat!("`wgsl/", $stem, ".wgsl`")]
            pub static $name: ShaderSource = ShaderSource {
                stem: $stem,
                code: concat!(
                    $(include_str!(concat!("../../wgsl/", $head, ".wgsl")),)*
                    include_str!(concat!("../../wgsl/", $stem, ".wgsl"))
                ),
                needs_f16: false,
            };
        )*
        /// Every standalone `.wgsl` module of the crate.
        pub static SHADERS: &[&ShaderSource] = &[$(&$name),*];
        /// Stems of `.wgsl` files that are only prepended to other modules (shared code).
        pub static SHADER_HEADERS: &[&str] = &[$($($head,)*)*];
    };
}

shaders![
    GEMM = "gemm",
    PAGE_COPY = "page_copy",
    PAGED_KV_APPEND = "paged_kv_append",
    PACKED_ATTENTION_BWD = "packed_attention_bwd" + "packed_attention",
    PACKED_ATTENTION_FWD = "packed_attention_fwd" + "packed_attention",
    RESIDUAL_ADD = "residual_add",
    RMSNORM = "rmsnorm",
    CATEGORICAL = "categorical",
    EMBEDDING = "embedding",
    GATHER_LOGPROB = "gather_logprob" + "softmax_row",
    LOGIT_MASK = "logit_mask",
    ROPE = "rope",
    SOFTMAX = "softmax" + "softmax_row",
    SWIGLU = "swiglu",
    MERGE_STATES = "merge_states",
    PAGED_DECODE = "paged_decode" + "decode_tile",
    TREE_DECODE = "tree_decode" + "decode_tile",
    ADAMW = "adamw",
    EMBEDDING_BWD = "embedding_bwd",
    FILL = "fill",
    RMSNORM_BWD = "rmsnorm_bwd",
    RMSNORM_BWD_DW = "rmsnorm_bwd_dw",
    SCALE = "scale",
    SUM_SQUARES = "sum_squares",
    SWIGLU_BWD = "swiglu_bwd",
    TARGET_LOGPROB = "target_logprob" + "target_logprob_stats",
    TARGET_LOGPROB_BWD = "target_logprob_bwd" + "target_logprob_stats",
];

/// The f16-storage variant of `shader`, or `None` if it has no `alias elem_t = f32;` line.
pub fn f16_variant(shader: &'static ShaderSource) -> Option<&'static ShaderSource> {
    if !shader.code.contains(ELEM_F32) {
        return None;
    }
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static ShaderSource>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let v = cache.entry(shader.stem).or_insert_with(|| {
        let code =
            format!("enable f16;\n{}", shader.code.replacen(ELEM_F32, "alias elem_t = f16;", 1));
        // Leaked once per shader for the life of the process, like the static sources.
        Box::leak(Box::new(ShaderSource {
            stem: Box::leak(format!("{}_f16", shader.stem).into_boxed_str()),
            code: Box::leak(code.into_boxed_str()),
            needs_f16: true,
        }))
    });
    Some(*v)
}
