#!/usr/bin/env python3
"""PyTorch peer of `cargo bench -p treepo-benches --bench tree_decode` (CUDA part).

Per-leaf decode attention with torch SDPA on the same shapes as the Rust benchmark: one decode
step of one layer, one query row per leaf, Llama-3-8B-like heads (32 q / 8 kv, head_dim 128),
bf16, each leaf attending to its whole root->leaf path (prefix + own suffix).

Two peers per case, both the "no sharing" baseline a PyTorch engine would run:
  * loop    — one SDPA call per leaf on that leaf's contiguous K/V [1, 8, L, 128];
  * batched — one SDPA call on all leaves padded to the longest path, with a key-padding mask.
K/V are materialized contiguously (a PyTorch engine without a paged kernel copies them), so
these numbers are per-leaf attention only, without the gather.

Output (one line per case and mode, parsable by scripts/gpu-check.sh):
  PEER decode_sdpa case=<name> mode=<loop|batched> l2=<warm|cold> us=<median> distinct_bytes=<n>
      floor_us=<distinct bytes at 3.0 TB/s>
Timing: CUDA events, median of --iters runs after --warmup; with --cold a 256 MiB buffer is
rewritten before each run (outside the timed region) so the L2 holds no K/V.

Usage: python3 scripts/peers/decode_sdpa.py [--iters 50] [--warmup 10] [--cold]
"""

import argparse
import statistics
import sys

CASES = [
    ("16x(1k+64)", [(1, 1024), (16, 64)]),
    ("16x(1k+256)", [(1, 1024), (16, 256)]),
    ("16x(4k+64)", [(1, 4096), (16, 64)]),
    ("64x(1k+64)", [(1, 1024), (64, 64)]),
    ("1k>4x256>16x64", [(1, 1024), (4, 256), (4, 64)]),
    ("1x(1k+64)", [(1, 1024), (1, 64)]),
]
HQ, HKV, D = 32, 8, 128
COPY_BW = 3.0e12  # measured H100 device-copy bandwidth (bytes read + written per second)


def tree_paths(levels):
    """Path lengths of the leaves and the distinct token count of a level-built tree."""
    paths = [0]
    distinct = 0
    for fanout, tokens in levels:
        paths = [p + tokens for p in paths for _ in range(fanout)]
        distinct += tokens * len(paths)
    return paths, distinct


def time_cuda(torch, fn, iters, warmup, flush=None):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if flush is not None:
            flush()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)  # ms -> us
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--cold", action="store_true", help="also time with a flushed L2")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"SKIP decode_sdpa: PyTorch is not installed ({e})")
        return 0
    if not torch.cuda.is_available():
        print("SKIP decode_sdpa: no CUDA device")
        return 0
    dev = torch.device("cuda")
    dt = torch.bfloat16
    torch.manual_seed(0)
    flush_buf = torch.empty(64 << 20, dtype=torch.float32, device=dev)

    def flush():
        flush_buf.add_(1.0)

    print(f"PEER decode_sdpa device=\"{torch.cuda.get_device_name()}\" torch={torch.__version__} "
          f"heads={HQ}q/{HKV}kv head_dim={D} dtype=bf16")
    for name, levels in CASES:
        paths, distinct = tree_paths(levels)
        b = len(paths)
        distinct_bytes = distinct * 2 * HKV * D * 2
        floor_us = distinct_bytes / COPY_BW * 1e6
        q = torch.randn(b, HQ, 1, D, device=dev, dtype=dt)
        ks = [torch.randn(1, HKV, n, D, device=dev, dtype=dt) for n in paths]
        vs = [torch.randn(1, HKV, n, D, device=dev, dtype=dt) for n in paths]

        def loop():
            for i in range(b):
                F.scaled_dot_product_attention(q[i:i + 1], ks[i], vs[i], enable_gqa=True)

        lmax = max(paths)
        kp = torch.zeros(b, HKV, lmax, D, device=dev, dtype=dt)
        vp = torch.zeros(b, HKV, lmax, D, device=dev, dtype=dt)
        mask = torch.zeros(b, 1, 1, lmax, device=dev, dtype=torch.bool)
        for i, n in enumerate(paths):
            kp[i, :, :n] = ks[i][0]
            vp[i, :, :n] = vs[i][0]
            mask[i, :, :, :n] = True

        def batched():
            F.scaled_dot_product_attention(q, kp, vp, attn_mask=mask, enable_gqa=True)

        for mode, fn in (("loop", loop), ("batched", batched)):
            for l2 in ("warm", "cold") if args.cold else ("warm",):
                us = time_cuda(torch, fn, args.iters, args.warmup, flush if l2 == "cold" else None)
                print(f"PEER decode_sdpa case={name} mode={mode} l2={l2} us={us:.2f} "
                      f"distinct_bytes={distinct_bytes} floor_us={floor_us:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
