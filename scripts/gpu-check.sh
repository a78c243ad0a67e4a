#!/usr/bin/env bash
# Runs on the GPU machine (repository root, gpu-bin/ carried from scripts/gpu-build.sh):
#   1. every test binary with TREEPO_REQUIRE_CUDA=1 (a CUDA skip is a failure here);
#   2. compute-sanitizer memcheck and racecheck over the kernel conformance tests (CUDA only);
#   3. the criterion benches, and the PyTorch peers of scripts/peers/ when present;
#   4. a summary table, last, also written to $OUT/summary.md when $OUT is set.
# Usage: scripts/gpu-check.sh [--quick]   (--quick: tests only, no sanitizer/benches)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/gpu-bin
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
export TREEPO_REQUIRE_CUDA=1
export TREEPO_KERNEL_CACHE=$out/kernel-cache
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
export PATH=$CUDA_PATH/bin:$PATH
export LD_LIBRARY_PATH=$CUDA_PATH/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
quick=0; [ "${1:-}" = "--quick" ] && quick=1
summary=()
record() { summary+=("| $1 | $2 | $3 |"); }

[ -d "$bin" ] || { echo "no gpu-bin/: run scripts/gpu-build.sh on the build machine and carry gpu-bin" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

step() { printf '\n==> %s (%s)\n' "$1" "$(date +%T)"; }

step "tests (TREEPO_REQUIRE_CUDA=1)"
while IFS=$'\t' read -r name dir; do
  log=$out/test-$name.log
  start=$(date +%s)
  (cd "$root/$dir" && "$bin/tests/$name" --test-threads=4) > "$log" 2>&1
  rc=$?
  passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END{print s+0}')
  failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END{print s+0}')
  record "test $name" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "$passed passed, $failed failed, $(( $(date +%s) - start )) s"
  [ $rc -eq 0 ] || tail -n 40 "$log"
done < "$bin/tests.tsv"

if [ $quick -eq 0 ] && command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer over the kernel conformance tests"
  while IFS=$'\t' read -r name dir; do
    case "$name" in treepo-kernels--*|tree-attn--*) ;; *) continue ;; esac
    case "$name" in *nvrtc_compile*|*wgsl_validate*|*device*) continue ;; esac
    for tool in memcheck racecheck; do
      log=$out/sanitizer-$tool-$name.log
      (cd "$root/$dir" && compute-sanitizer --tool "$tool" --error-exitcode 99 \
         "$bin/tests/$name" cuda --test-threads=1) > "$log" 2>&1
      rc=$?
      errs=$(grep -Eo 'ERROR SUMMARY: [0-9]+' "$log" | awk '{s+=$3} END{print s+0}')
      record "$tool $name" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "$errs errors"
    done
  done < "$bin/tests.tsv"
fi

if [ $quick -eq 0 ]; then
  step "benchmarks"
  while IFS=$'\t' read -r name dir; do
    log=$out/bench-$name.log
    (cd "$root/$dir" && "$bin/benches/$name" --bench --noplot) > "$log" 2>&1
    rc=$?
    record "bench $name" "$([ $rc -eq 0 ] && echo ran || echo FAIL)" "see bench-$name.log"
    grep -E 'ratio|GB/s|GFLOP/s|TFLOP/s' "$log" | head -n 40
  done < "$bin/benches.tsv"
  if [ -d scripts/peers ] && python3 -c 'import torch' 2>/dev/null; then
    step "PyTorch peers"
    for p in scripts/peers/*.py; do
      [ -e "$p" ] || continue
      log=$out/peer-$(basename "$p" .py).log
      python3 "$p" > "$log" 2>&1
      record "peer $(basename "$p")" "$([ $? -eq 0 ] && echo ran || echo FAIL)" "see $(basename "$log")"
    done
  fi
fi

step "summary"
{
  echo "| check | result | detail |"
  echo "|---|---|---|"
  printf '%s\n' "${summary[@]}"
} | tee "$out/summary.md"
grep -q '| FAIL |' "$out/summary.md" && exit 1
exit 0
