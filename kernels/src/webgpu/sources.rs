//! The embedded `.wgsl` sources: one entry per file stem in `kernels/wgsl/`.

/// One WGSL module.
#[derive(Debug)]
pub struct ShaderSource {
    /// File stem (`rmsnorm` for `wgsl/rmsnorm.wgsl`).
    pub stem: &'static str,
    /// The file's text.
    pub code: &'static str,
    /// Whether the module uses `enable f16;` (needs the adapter's `SHADER_F16`).
    pub needs_f16: bool,
}

macro_rules! shaders {
    ($($name:ident = $stem:literal),* $(,)?) => {
        $(
            #[doc = concat!("`wgsl/", $stem, ".wgsl`")]
            pub static $name: ShaderSource = ShaderSource {
                stem: $stem,
                code: include_str!(concat!("../../wgsl/", $stem, ".wgsl")),
                needs_f16: false,
            };
        )*
        /// Every f32 `.wgsl` file of the crate (f16 variants are listed in [`SHADERS_F16`]).
        pub static SHADERS: &[&ShaderSource] = &[$(&$name),*];
    };
}

shaders![GEMM = "gemm", RESIDUAL_ADD = "residual_add", RMSNORM = "rmsnorm"];

/// The modules that need `SHADER_F16`.
pub static SHADERS_F16: &[&ShaderSource] = &[];
