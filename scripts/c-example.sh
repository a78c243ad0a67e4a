#!/usr/bin/env bash
# The C API end to end: builds bindings/c (`cargo build --release -p treepo-c`: the release
# profile of the README's test command, so its dependencies are already built), compiles the examples in
# bindings/c/examples against include/treepo.h and the shared library libtreepo.so, and runs:
#
#   scripts/c-example.sh                    # tree_decode.c on the CPU device
#   TREEPO_C_CUDA=1 scripts/c-example.sh    # + tree_decode_cuda.c on the emulated CUDA device
#   TREEPO_C_CUDA=gpu scripts/c-example.sh  # + tree_decode_cuda.c on the machine's real libcuda
#
# With TREEPO_C_CUDA set, failing to build, link or run the CUDA example fails the script: it
# never skips. Linking is dynamic (-ltreepo, rpath to the build dir): the cdylib exports only
# the treepo_* symbols and is one file, while the static archive would need the platform's
# native-static-libs list and is much larger; for the CUDA example it also matters that the
# program and treepo (which dlopens libcuda) end up sharing one libcuda, which dynamic linking
# of both guarantees. docs/c-api.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cuda_mode=${TREEPO_C_CUDA:-0}
case "$cuda_mode" in 0|1|gpu) ;; *) echo "c-example.sh: TREEPO_C_CUDA must be 0, 1 or gpu, not '$cuda_mode'" >&2; exit 2 ;; esac

cargo build --release -p treepo-c ${CARGO_LOCKED:+--locked}
libdir="${CARGO_TARGET_DIR:-$root/target}/release"
[ -f "$libdir/libtreepo.so" ] || { echo "c-example.sh: $libdir/libtreepo.so was not built" >&2; exit 1; }
out="${CARGO_TARGET_DIR:-$root/target}/c-example"
mkdir -p "$out"
cc=${CC:-cc}
cflags=(-std=c11 -O1 -Wall -Wextra -Werror -Ibindings/c/include -Ibindings/c/examples)
link=(-L"$libdir" -ltreepo -Wl,-rpath,"$libdir" -lm)

echo "==> tree_decode.c (CPU)"
"$cc" "${cflags[@]}" bindings/c/examples/tree_decode.c -o "$out/tree_decode" "${link[@]}"
"$out/tree_decode"

[ "$cuda_mode" = 0 ] && exit 0
echo "==> tree_decode_cuda.c ($([ "$cuda_mode" = 1 ] && echo "emulated CUDA device" || echo "GPU"))"
if [ "$cuda_mode" = 1 ]; then
  emu_dir=$(scripts/cuda-emu.sh)
  "$cc" "${cflags[@]}" bindings/c/examples/tree_decode_cuda.c -o "$out/tree_decode_cuda" \
    "${link[@]}" -L"$emu_dir" -lcuda
  scripts/cuda-emu.sh "$out/tree_decode_cuda"
else
  "$cc" "${cflags[@]}" bindings/c/examples/tree_decode_cuda.c -o "$out/tree_decode_cuda" \
    "${link[@]}" -lcuda
  TREEPO_REQUIRE_CUDA=1 "$out/tree_decode_cuda"
fi
