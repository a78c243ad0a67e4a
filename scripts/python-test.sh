#!/usr/bin/env bash
# Builds the `treepo` Python package (bindings/python) into a pinned virtual environment and runs
# its tests: CPU always; the CUDA tests run where torch sees a GPU and are skipped loudly
# (`SKIP cuda: ...` in pytest's -rs summary) elsewhere. With TREEPO_PY_CUDA_EMU=1 (CI sets it),
# the package's CUDA path then also runs without a GPU or torch CUDA, on the emulated CUDA device
# (scripts/cuda-emu.sh, docs/cuda-emu.md): bindings/python/tests/test_cuda_emu.py.
#
#   scripts/python-test.sh [pytest args...]
#
# TREEPO_PY_VENV: the venv to create or reuse (default .cache/py-venv). It is (re)filled from
# bindings/python/requirements-test.txt whenever that file changes (a hash stamp in the venv).
# PYTHON: the interpreter that creates it (default python3; 3.9 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TREEPO_PY_VENV:-.cache/py-venv}"
req=bindings/python/requirements-test.txt
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
venv_bin="$(cd "$venv/bin" && pwd)"
export PATH="$venv_bin:$PATH" # maturin's PEP 517 hook runs the `maturin` executable
py="$venv_bin/python"
stamp="$venv/.treepo-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    # --no-deps: exactly the pinned set (torch's declared dependencies would pull ~3 GB more).
    "$py" -m pip install --disable-pip-version-check --no-deps -r "$req"
    echo "$want" >"$stamp"
fi
"$py" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, \
'cuda', torch.cuda.is_available())"

# The extension is built by maturin (release, abi3, --locked Cargo.lock) from the pinned maturin.
"$py" -m pip install --disable-pip-version-check --no-deps --no-build-isolation \
    --force-reinstall ./bindings/python
"$py" -m pytest bindings/python -q -rs "$@"
if [ "${TREEPO_PY_CUDA_EMU:-}" = 1 ]; then
    scripts/cuda-emu.sh env TREEPO_EMU_CUDA=1 "$py" -m pytest bindings/python/tests/test_cuda_emu.py \
        -q -rs
fi
