#!/usr/bin/env bash
# Builds everything the GPU machine runs, here (it has no Rust toolchain and no registry):
# stripped release test binaries (one per test target) and criterion bench binaries, copied into
# gpu-bin/ with a manifest. The GPU machine receives at most 64 MiB of carried files, so the total
# size is checked. Usage: scripts/gpu-build.sh [extra cargo args]
set -euo pipefail
# Pipelines fail when cargo does, not only when the collector does.
cd "$(dirname "$0")/.."
out=gpu-bin
rm -rf "$out" && mkdir -p "$out/tests" "$out/benches"

collect() {  # KIND DEST: copies the executables cargo reports, prints name<TAB>package dir
  python3 scripts/gpu_collect.py "$1" "$2"
}

# Only the crates with device code, built with the CUDA backend alone (wgpu is not linked: the
# binaries stay small and the GPU machine needs no Vulkan loader). Each crate's integration tests
# are one binary (`suite`).
gpu_crates=(-p treepo-kernels -p tree-attn -p treepo-trainer)
cargo test "${gpu_crates[@]}" --profile gpu --no-run --no-default-features --features cuda \
  --message-format=json "$@" 2>"$out/build-tests.log" | collect test "$out/tests" > "$out/tests.tsv" \
  || { tail -n 30 "$out/build-tests.log"; exit 1; }
cargo bench -p treepo-benches --profile gpu --no-run --no-default-features --features cuda \
  --message-format=json "$@" 2>"$out/build-benches.log" | collect bench "$out/benches" > "$out/benches.tsv" \
  || { tail -n 30 "$out/build-benches.log"; exit 1; }

size=$(du -sm "$out" | cut -f1)
echo "gpu-bin: $(wc -l < "$out/tests.tsv") test binaries, $(wc -l < "$out/benches.tsv") bench binaries, ${size} MiB"
if [ "$size" -gt 60 ]; then
  echo "gpu-bin is ${size} MiB: over the 60 MiB budget of what travels to the GPU machine" >&2
  exit 1
fi
