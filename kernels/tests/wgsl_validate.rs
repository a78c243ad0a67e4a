//! Every `.wgsl` file parses and validates with naga (no adapter needed).

#![cfg(feature = "wgpu")]

use treepo_kernels::webgpu::sources::{SHADER_HEADERS, SHADERS, f16_variant};

#[test]
fn every_shader_validates() {
    let mut failures = Vec::new();
    for s in SHADERS.iter().copied().chain(SHADERS.iter().filter_map(|s| f16_variant(s))) {
        let module = match naga::front::wgsl::parse_str(s.code) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{}.wgsl: parse error:\n{}",
                    s.stem,
                    e.emit_to_string(s.code)
                ));
                continue;
            }
        };
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = v.validate(&module) {
            failures.push(format!(
                "{}.wgsl: validation error:\n{}",
                s.stem,
                e.emit_to_string(s.code)
            ));
        } else {
            eprintln!("{}.wgsl: {} entry points ok", s.stem, module.entry_points.len());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Regression: every `wgsl/*.wgsl` file is registered in `shaders![...]` (an unregistered one
/// is neither validated here nor usable).
#[test]
fn every_wgsl_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "wgsl")
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = SHADERS.iter().map(|s| s.stem.to_string()).collect();
    // Shared headers are registered through the modules they are prepended to.
    on_disk.retain(|stem| !SHADER_HEADERS.contains(&stem.as_str()));
    registered.sort();
    assert_eq!(on_disk, registered, "kernels/wgsl/*.wgsl vs webgpu::sources::SHADERS");
}
