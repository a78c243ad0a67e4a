//! Every `.wgsl` file parses and validates with naga (no adapter needed).

#![cfg(feature = "wgpu")]

use treepo_kernels::webgpu::sources::{SHADERS, f16_variant};

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
