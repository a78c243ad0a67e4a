//! Every `.cu` file compiles with NVRTC for sm_75, sm_80 and sm_90 — on a machine without a GPU
//! — and compiler messages name the file and line they come from. Skips loudly when libnvrtc is
//! absent; `TREEPO_REQUIRE_NVRTC=1` turns the skip into a failure. Also source-level checks of
//! the `.cu` files that need no compiler.

#![cfg(feature = "cuda")]

use treepo_kernels::cuda::compile;
use treepo_kernels::cuda::sources::{KernelSource, SOURCES};
use treepo_kernels::testing::skip;

fn nvrtc_or_skip() -> bool {
    match compile::nvrtc_available() {
        Ok(()) => true,
        Err(e) => {
            let required = std::env::var("TREEPO_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
            assert!(!required, "TREEPO_REQUIRE_NVRTC=1 but NVRTC is unavailable: {e}");
            skip("nvrtc", &e.to_string());
            false
        }
    }
}

/// sm_75 (Turing, e.g. T4) has no `mma.sync.m16n8k16`: a module holding one fails in ptxas, so
/// this catches tensor-core code outside a `TREEPO_HAS_MMA` guard.
#[test]
fn every_kernel_compiles_for_sm75_sm80_and_sm90() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = compile::nvrtc_version().unwrap();
    eprintln!("NVRTC {major}.{minor}, include dirs {:?}", compile::include_dirs());
    let mut failures = Vec::new();
    for src in SOURCES {
        for arch in ["sm_75", "sm_80", "sm_90"] {
            match compile::compile(src, arch) {
                Ok(cubin) => {
                    assert!(
                        cubin.len() > 100,
                        "{}.cu for {arch}: suspiciously small cubin",
                        src.stem
                    );
                    eprintln!("{}.cu -> {arch}: {} bytes", src.stem, cubin.len());
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} compile failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_broken_kernel_reports_the_compiler_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let bad = KernelSource {
        stem: "broken",
        headers: &[],
        code: "extern \"C\" __global__ void k() { undeclared_thing(); }",
    };
    let err = compile::compile(&bad, "sm_80").unwrap_err().to_string();
    assert!(err.contains("broken.cu") && err.contains("undeclared_thing"), "{err}");
}

/// Regression: the prepended headers once shared the `.cu` file's `#line`, so an error in the
/// file was reported at its line plus the headers' length, and one in a header as the `.cu`
/// file's. NVRTC's log format is `file(line): error: ...`.
#[test]
fn compiler_messages_name_the_file_and_line() {
    if !nvrtc_or_skip() {
        return;
    }
    const FINE: &str = "// line 1\n__device__ int probe_fine() { return 1; }\n// line 3\n";
    const KERNEL: &str = "extern \"C\" __global__ void k(int* o) { o[0] = probe_fine(); }\n";
    let err_of = |src: KernelSource| compile::compile(&src, "sm_80").unwrap_err().to_string();

    let in_cu = KernelSource {
        stem: "probe_cu",
        headers: &[("probe_a.cuh", FINE)],
        code: "// line 1\n// line 2\n// line 3\n\
               extern \"C\" __global__ void k() { undeclared_in_cu(); }\n",
    };
    let log = err_of(in_cu);
    assert!(log.contains("probe_cu.cu(4): error"), "the .cu file's line 4:\n{log}");

    let in_header = KernelSource {
        stem: "probe_header",
        headers: &[
            ("probe_a.cuh", FINE),
            (
                "probe_b.cuh",
                "// line 1\n__device__ int probe_bad() { return undeclared_in_cuh; }\n",
            ),
        ],
        code: KERNEL,
    };
    let log = err_of(in_header);
    assert!(log.contains("probe_b.cuh(2): error"), "the second header's line 2:\n{log}");
    assert!(!log.contains("probe_header.cu("), "nothing is wrong in the .cu file:\n{log}");
}

/// Regression: `residual_add.cu` and `swiglu.cu` once ran their grid-stride loop on a `u32`
/// index, which wraps when `i + stride` passes 2^32 (n near the u32 limit). In a grid-stride
/// loop the stride and the loop's starting index are 64-bit: `(i64)gridDim.x * blockDim.x`,
/// `for (i64 i = (i64)blockIdx.x * blockDim.x + ...` (or `unsigned long long`).
#[test]
fn grid_stride_loops_use_64_bit_indices() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    let wide = |line: &str, at: usize| {
        let before = line[..at].trim_end();
        before.ends_with("(i64)") || before.ends_with("(unsigned long long)")
    };
    let mut bad = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".cu") || name.ends_with(".cuh")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            for pat in ["gridDim.x * blockDim.x", "blockIdx.x * blockDim.x"] {
                if pat.starts_with("blockIdx") && !line.contains("for (") {
                    continue; // a one-thread-per-item index, not a loop's
                }
                for (at, _) in line.match_indices(pat) {
                    if !wide(line, at) {
                        bad.push(format!("{name}:{}: {}", i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "32-bit global index or grid stride:\n{}", bad.join("\n"));
}

/// Regression: a `.cu` file that is not in `sources![...]` is never compiled here nor loadable
/// at run time (a text edit of the list once missed four files after rustfmt reflowed it).
#[test]
fn every_cu_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "cu").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = SOURCES.iter().map(|s| s.stem.to_string()).collect();
    registered.sort();
    assert_eq!(on_disk, registered, "kernels/cuda/*.cu vs cuda::sources::SOURCES");
}
