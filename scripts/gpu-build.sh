#!/usr/bin/env bash
# Builds everything the GPU machine runs, here (it has no Rust toolchain and no registry):
# stripped release test binaries (one per test target) and criterion bench binaries, copied into
# gpu-bin/ with a manifest. The GPU machine receives at most 64 MiB of carried files, so the total
# size is checked. Usage: scripts/gpu-build.sh [extra cargo args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bin
rm -rf "$out" && mkdir -p "$out/tests" "$out/benches"

collect() {  # reads cargo's JSON messages, copies each executable of the given kind
  local kind=$1 dest=$2
  python3 -c '
import json, sys, shutil, os
kind, dest = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"): continue
    t = m["target"]
    if kind not in t["kind"]: continue
    pkg = m["package_id"].split("#")[0].rstrip("/").split("/")[-1].split("@")[0]
    name = f"{pkg}--{t[\"name\"]}"
    shutil.copy2(m["executable"], os.path.join(dest, name))
    # Tests run from their package root (fixtures are found relative to it).
    root = os.path.relpath(os.path.dirname(t["src_path"]), os.getcwd()).split("/")[0]
    print(f"{name}\t{root}")
' "$kind" "$dest"
}

cargo test --workspace --profile gpu --no-run --message-format=json "$@" 2>/dev/null \
  | collect test "$out/tests" > "$out/tests.tsv"
cargo bench --workspace --profile gpu --no-run --message-format=json "$@" 2>/dev/null \
  | collect bench "$out/benches" > "$out/benches.tsv"

size=$(du -sm "$out" | cut -f1)
echo "gpu-bin: $(wc -l < "$out/tests.tsv") test binaries, $(wc -l < "$out/benches.tsv") bench binaries, ${size} MiB"
if [ "$size" -gt 60 ]; then
  echo "gpu-bin is ${size} MiB: over the 60 MiB budget of what travels to the GPU machine" >&2
  exit 1
fi
