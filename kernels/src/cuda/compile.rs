//! NVRTC compilation of the embedded `.cu` sources, with an on-disk cubin cache.
//!
//! This part needs only `libnvrtc` (no driver, no GPU): CI uses it to prove that every kernel
//! compiles for sm_75, sm_80 and sm_90 on a CPU-only machine (see `tests/nvrtc_compile.rs`).
//!
//! Cache key: FNV-1a 64 of (prelude + headers + source, options, arch, NVRTC version). Files
//! are written to a temporary name and renamed, so a crash never leaves a truncated cubin behind.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use super::sources::{KernelSource, PRELUDE};
use crate::{BackendKind, KernelError, Result};

/// Checks that `libnvrtc` can be loaded; the error names the library and how to provide it.
pub fn nvrtc_available() -> Result<()> {
    // SAFETY: `is_culib_present` only tries `dlopen` on candidate library names.
    if unsafe { nvrtc_sys::is_culib_present() } {
        Ok(())
    } else {
        Err(KernelError::BackendUnavailable {
            backend: BackendKind::Cuda,
            reason: "libnvrtc (CUDA 13 runtime compiler) was not found: install the CUDA 13 \
                     toolkit or the `nvidia-cuda-nvrtc==13.0.88` wheel and add its lib directory \
                     to LD_LIBRARY_PATH"
                .into(),
        })
    }
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: both pointers are valid for writes; the library is present (checked above).
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| KernelError::Cuda { context: "nvrtcVersion".into(), msg: format!("{e:?}") })?;
    Ok((major, minor))
}

/// Directories searched for CUDA headers (`cuda_fp16.h`, `cuda_bf16.h`, `mma.h`), in order:
/// `TREEPO_CUDA_INCLUDE` (a `:`-separated list), `$CUDA_PATH/include`, `/usr/local/cuda/include`.
/// Only existing directories are returned.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(list) = std::env::var("TREEPO_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&list));
    }
    if let Ok(root) = std::env::var("CUDA_PATH") {
        dirs.push(Path::new(&root).join("include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.retain(|d| d.join("cuda_fp16.h").is_file());
    dirs
}

/// The NVRTC options used for `arch` (e.g. `sm_90`).
pub fn options_for(arch: &str) -> Vec<String> {
    let mut opts = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "--device-as-default-execution-space".to_string(),
        "-lineinfo".to_string(),
    ];
    for dir in include_dirs() {
        opts.push(format!("--include-path={}", dir.display()));
    }
    opts
}

/// Compiles `src` to a cubin for `arch` (`sm_75`, `sm_80`, `sm_90`, `sm_90a`, ...). The error
/// carries the full compiler log.
pub fn compile(src: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    nvrtc_available()?;
    let options = options_for(arch);
    let text = full_source(src);
    let code = CString::new(text).map_err(|_| KernelError::Invalid {
        op: "nvrtc",
        msg: format!("{}.cu contains a NUL byte", src.stem),
    })?;
    let name = CString::new(format!("{}.cu", src.stem)).map_err(|_| KernelError::Invalid {
        op: "nvrtc",
        msg: "kernel stem contains a NUL byte".into(),
    })?;
    let prog = Program(
        nvrtc::create_program(&code, Some(&name))
            .map_err(|e| cuda_err(format!("nvrtcCreateProgram({})", src.stem), e))?,
    );
    // SAFETY: `prog.0` is a live program created above; options are valid C strings.
    let compiled = unsafe { nvrtc::compile_program(prog.0, &options) };
    if let Err(e) = compiled {
        // SAFETY: the program is live; the log is a NUL-terminated buffer owned by us.
        let log = unsafe { nvrtc::get_program_log(prog.0) }
            .map(|raw| c_chars_to_string(&raw))
            .unwrap_or_else(|le| format!("(no log: {le:?}; compile error {e:?})"));
        let log = if include_dirs().is_empty() {
            format!(
                "{log}\n(hint: no CUDA include directory was found; set TREEPO_CUDA_INCLUDE, \
                     CUDA_PATH or install /usr/local/cuda so cuda_fp16.h can be found)"
            )
        } else {
            log
        };
        return Err(KernelError::Compile {
            file: format!("{}.cu", src.stem),
            arch: arch.to_string(),
            options,
            log,
        });
    }
    let mut size = 0usize;
    // SAFETY: the program compiled successfully; `size` is valid for writes.
    unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .map_err(|e| cuda_err(format!("nvrtcGetCUBINSize({})", src.stem), e))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` has exactly the size NVRTC reported.
    unsafe { nvrtc_sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| cuda_err(format!("nvrtcGetCUBIN({})", src.stem), e))?;
    Ok(cubin)
}

/// [`compile`] through the on-disk cache (`TREEPO_KERNEL_CACHE`, else
/// `$XDG_CACHE_HOME/treepo-kernels`, else `~/.cache/treepo-kernels`; no cache if none is set).
pub fn compile_cached(src: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    let Some(dir) = cache_dir() else { return compile(src, arch) };
    let key = cache_key(src, arch)?;
    let path = dir.join(format!("{}-{arch}-{key:016x}.cubin", src.stem));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let cubin = compile(src, arch)?;
    let io = |source| KernelError::Cache { path: path.clone(), source };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &cubin).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(cubin)
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TREEPO_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("treepo-kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("treepo-kernels"))
}

fn cache_key(src: &KernelSource, arch: &str) -> Result<u64> {
    let (major, minor) = nvrtc_version()?;
    let mut h = Fnv::new();
    h.write(full_source(src).as_bytes());
    for o in options_for(arch) {
        h.write(o.as_bytes());
        h.write(&[0]);
    }
    h.write(arch.as_bytes());
    h.write(&major.to_le_bytes());
    h.write(&minor.to_le_bytes());
    Ok(h.0)
}

/// The text NVRTC sees: the shared prelude, the file's headers, then the file, each starting
/// with `#line 1 "<its file name>"` so diagnostics and `-lineinfo` point into the right file.
/// The cache key hashes this whole text.
fn full_source(src: &KernelSource) -> String {
    let mut text = String::new();
    let mut part = |file: &str, body: &str| {
        text.push_str(&format!("#line 1 \"{file}\"\n"));
        text.push_str(body);
        if !body.ends_with('\n') {
            text.push('\n');
        }
    };
    part("common.cuh", PRELUDE);
    for (file, body) in src.headers {
        part(file, body);
    }
    part(&format!("{}.cu", src.stem), src.code);
    text
}

struct Fnv(u64);
impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Owns an `nvrtcProgram` and destroys it on drop.
struct Program(nvrtc_sys::nvrtcProgram);
impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `create_program` and is destroyed exactly once.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

fn cuda_err(context: String, e: impl std::fmt::Debug) -> KernelError {
    KernelError::Cuda { context, msg: format!("{e:?}") }
}

fn c_chars_to_string(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&[bytes.as_slice(), &[0]].concat())
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}
