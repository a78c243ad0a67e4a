// detectors.cu — emulator self-test kernels: each faulty kernel here breaks one rule a GPU
// leaves undefined (or traps on), and the emulator must fail the launch naming it; the good ones
// check that a failure is not sticky and that dynamic shared memory is poisoned. Emulator-only
// (never compiled by NVRTC); kernels/tests/cuda_emu.rs launches them.

// A good kernel: out[t] = 3t + 1 for t < n, through a barrier.
extern "C" __global__ void emu_selftest_ok(int* out, int n) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int v = 3 * t + 1;
    __syncthreads();
    if (t < n) out[t] = v;
}

// Half of the block waits at one __syncthreads, the other half at another.
extern "C" __global__ void emu_selftest_divergent_barriers(int* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

// Thread 0 exits before a barrier the others reach.
extern "C" __global__ void emu_selftest_barrier_after_exit(int* out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Lane 0 waits for lane 1 at a shuffle while lane 1 (and the rest) wait at the block barrier.
extern "C" __global__ void emu_selftest_deadlock(int* out) {
    int v = (int)threadIdx.x;
    if (threadIdx.x == 0) v = __shfl_sync(0x3u, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}

// Half of the warp is at a shuffle, the other half at a ballot, both over the whole warp.
extern "C" __global__ void emu_selftest_warp_diverged(int* out) {
    int v = (int)threadIdx.x;
    if (threadIdx.x < 16) {
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    } else {
        v = (int)__ballot_sync(0xffffffffu, v & 1);
    }
    out[threadIdx.x] = v;
}

// Lane 0 shuffles with lanes 0 and 1, but lane 1 has exited.
extern "C" __global__ void emu_selftest_shfl_exited(int* out) {
    if (threadIdx.x != 0) return;
    out[0] = __shfl_sync(0x3u, (int)threadIdx.x, 1);
}

// Lanes 0..3 shuffle among themselves but read lane 5.
extern "C" __global__ void emu_selftest_shfl_outside_mask(int* out) {
    if (threadIdx.x >= 4) return;
    out[threadIdx.x] = __shfl_sync(0xfu, (int)threadIdx.x, 5);
}

// Writes dynamic shared memory at byte `at` (one past the end when at == sharedMemBytes) and
// reports the last byte inside it.
extern "C" __global__ void emu_selftest_smem_write(int* out, int bytes, int at) {
    DYNAMIC_SMEM(unsigned char, s);
    if (threadIdx.x == 0) {
        s[bytes - 1] = 7;
        s[at] = 9;
        out[0] = s[bytes - 1];
    }
}

// Thread 3 traps.
extern "C" __global__ void emu_selftest_trap(int* out) {
    if (threadIdx.x == 3) __trap();
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Copies the block's dynamic shared memory, before writing it, to out_f (as floats) and out_b
// (as bytes), then dirties it: every block must still start from the poison.
extern "C" __global__ void emu_selftest_smem_fill(float* out_f, unsigned char* out_b, int bytes) {
    DYNAMIC_SMEM(unsigned char, s);
    const float* sf = reinterpret_cast<const float*>(s);
    const int nf = bytes / 4;
    for (int i = threadIdx.x; i < nf; i += blockDim.x) out_f[blockIdx.x * nf + i] = sf[i];
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) out_b[blockIdx.x * bytes + i] = s[i];
    __syncthreads();
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) s[i] = (unsigned char)(i * 7 + 1);
}
