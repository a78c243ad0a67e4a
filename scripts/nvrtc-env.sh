# Sourced (not run): installs the pinned NVRTC 13.0 wheels into .cache/cuda-wheels once and exports
# what the CUDA backend needs to compile kernels without a CUDA toolkit: LD_LIBRARY_PATH (libnvrtc),
# TREEPO_CUDA_INCLUDE (cuda_fp16.h, cuda_bf16.h, mma.h) and TREEPO_KERNEL_CACHE (compiled cubins).
# Pin all three: a newer compiler emits code the GPU machines' driver rejects.
# Expects $root (the repository root).
nvrtc_wheels="$root/.cache/cuda-wheels/site"
nvrtc_pins=(nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88)
if [ ! -f "$nvrtc_wheels/.pins" ] || [ "$(cat "$nvrtc_wheels/.pins")" != "${nvrtc_pins[*]}" ]; then
  rm -rf "$nvrtc_wheels"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$nvrtc_wheels" "${nvrtc_pins[@]}"
  echo "${nvrtc_pins[*]}" > "$nvrtc_wheels/.pins"
fi
export LD_LIBRARY_PATH="$nvrtc_wheels/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TREEPO_CUDA_INCLUDE="$nvrtc_wheels/nvidia/cu13/include"
export TREEPO_KERNEL_CACHE="${TREEPO_KERNEL_CACHE:-$root/.cache/kernels}"
