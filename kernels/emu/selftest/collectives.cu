// collectives.cu — emulator self-test kernels: warp shuffles and votes, the block barrier's
// reductions, atomics across blocks and mma.m16n8k16 fragments. Emulator-only (never compiled
// by NVRTC); kernels/tests/cuda_emu.rs launches them and checks every result against CUDA's
// documented semantics, computed on the host.

// The four shuffles on an int and a float, every thread of the grid with the full mask and the
// given width. args holds four per-thread operands ([0, n): source lane, [n, 2n): delta up,
// [2n, 3n): delta down, [3n, 4n): lane mask); out_i/out_f hold the four results the same way.
extern "C" __global__ void emu_selftest_shuffles(const int* in_i, const float* in_f,
                                                 const int* args, int width, int* out_i,
                                                 float* out_f) {
    const unsigned n = gridDim.x * blockDim.x;
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    const int vi = in_i[t];
    const float vf = in_f[t];
    const int src = args[t];
    const unsigned up = (unsigned)args[n + t], down = (unsigned)args[2 * n + t];
    const int lane_mask = args[3 * n + t];
    out_i[t] = __shfl_sync(0xffffffffu, vi, src, width);
    out_i[n + t] = __shfl_up_sync(0xffffffffu, vi, up, width);
    out_i[2 * n + t] = __shfl_down_sync(0xffffffffu, vi, down, width);
    out_i[3 * n + t] = __shfl_xor_sync(0xffffffffu, vi, lane_mask, width);
    out_f[t] = __shfl_sync(0xffffffffu, vf, src, width);
    out_f[n + t] = __shfl_up_sync(0xffffffffu, vf, up, width);
    out_f[2 * n + t] = __shfl_down_sync(0xffffffffu, vf, down, width);
    out_f[3 * n + t] = __shfl_xor_sync(0xffffffffu, vf, lane_mask, width);
}

// Votes over a per-warp mask (masks[blockIdx.x * warps per block + warp], where the block's last
// warp may be partial): the lanes of the mask call __ballot_sync, __any_sync and __all_sync on
// pred; the others leave their outputs untouched.
extern "C" __global__ void emu_selftest_votes(const int* pred, const unsigned* masks,
                                              unsigned* out) {
    const unsigned n = gridDim.x * blockDim.x;
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned warps = (blockDim.x + 31) / 32;
    const unsigned mask = masks[blockIdx.x * warps + threadIdx.x / 32], lane = threadIdx.x % 32;
    if ((mask >> lane & 1u) == 0) return;
    out[t] = __ballot_sync(mask, pred[t]);
    out[n + t] = (unsigned)__any_sync(mask, pred[t]);
    out[2 * n + t] = (unsigned)__all_sync(mask, pred[t]);
}

// __syncthreads_count/_or/_and of pred over each (two-dimensional) block.
extern "C" __global__ void emu_selftest_bar_reduce(const int* pred, int* out) {
    const unsigned per_block = blockDim.x * blockDim.y;
    const unsigned n = gridDim.x * per_block;
    const unsigned t = blockIdx.x * per_block + threadIdx.y * blockDim.x + threadIdx.x;
    const int p = pred[t];
    out[t] = __syncthreads_count(p);
    out[n + t] = __syncthreads_or(p);
    out[2 * n + t] = __syncthreads_and(p);
}

// Every thread below n adds into one counter of each kind: sums, extrema and a ticket (the old
// value of an unsigned counter, so the tickets are a permutation of [0, n)).
extern "C" __global__ void emu_selftest_atomics(const int* vi, const float* vf, int n, int* isum,
                                                float* fsum, int* imax, int* imin,
                                                unsigned* counter, unsigned* tickets) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    atomicAdd(isum, vi[t]);
    atomicAdd(fsum, vf[t]);
    atomicMax(imax, vi[t]);
    atomicMin(imin, vi[t]);
    tickets[t] = atomicAdd(counter, 1u);
}

__device__ __forceinline__ u32 emu_selftest_pack(unsigned short lo, unsigned short hi) {
    return (u32)lo | ((u32)hi << 16);
}

// One mma.m16n8k16 per warp: D = A·B + C for tile w (the warp's index in the grid) with A
// 16x16 row-major, B 16x8 (k x n) row-major and C, D 16x8 row-major f32, as 16-bit patterns of
// f16 (bf16 == 0) or bf16. The fragments are loaded exactly as the PTX ISA tables say.
extern "C" __global__ void emu_selftest_mma(const unsigned short* A, const unsigned short* B,
                                            const float* C, int bf16, float* D) {
    const unsigned w = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    const unsigned short* a = A + w * 256;
    const unsigned short* b = B + w * 128;
    const float* c = C + w * 128;
    float* d = D + w * 128;
    const unsigned gid = lane / 4, tig = lane % 4;
    u32 ar[4];
    ar[0] = emu_selftest_pack(a[gid * 16 + 2 * tig], a[gid * 16 + 2 * tig + 1]);
    ar[1] = emu_selftest_pack(a[(gid + 8) * 16 + 2 * tig], a[(gid + 8) * 16 + 2 * tig + 1]);
    ar[2] = emu_selftest_pack(a[gid * 16 + 2 * tig + 8], a[gid * 16 + 2 * tig + 9]);
    ar[3] = emu_selftest_pack(a[(gid + 8) * 16 + 2 * tig + 8], a[(gid + 8) * 16 + 2 * tig + 9]);
    const u32 b0 = emu_selftest_pack(b[(2 * tig) * 8 + gid], b[(2 * tig + 1) * 8 + gid]);
    const u32 b1 = emu_selftest_pack(b[(2 * tig + 8) * 8 + gid], b[(2 * tig + 9) * 8 + gid]);
    float acc[4] = {c[gid * 8 + 2 * tig], c[gid * 8 + 2 * tig + 1], c[(gid + 8) * 8 + 2 * tig],
                    c[(gid + 8) * 8 + 2 * tig + 1]};
    if (bf16) {
        mma_m16n8k16_bf16(acc, ar, b0, b1);
    } else {
        mma_m16n8k16_f16(acc, ar, b0, b1);
    }
    d[gid * 8 + 2 * tig] = acc[0];
    d[gid * 8 + 2 * tig + 1] = acc[1];
    d[(gid + 8) * 8 + 2 * tig] = acc[2];
    d[(gid + 8) * 8 + 2 * tig + 1] = acc[3];
}
