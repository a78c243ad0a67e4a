#!/usr/bin/env python3
"""Peer of benches/benches/packed_attention.rs on the GPU machine: PyTorch FlexAttention with a
tree block mask (forward, and forward+backward), on the same trees and head shapes as our CUDA
run (H_q 32, H_kv 8, D 128, bf16), against the same leaves flattened one by one.

The mask is the one our kernels take: key j is visible to query rows [j, kv_row_end[j]), with
kv_row_end[j] the end of the subtree of j's node in DFS pre-order (tree_attn::packed::PackedTree).

Output: one line per (scenario, pass), `PEER packed_flex key=value ...`, parsable by splitting on
spaces and '='; times are medians of --reps runs (CUDA events), useful TFLOP/s count unmasked
pairs only (forward 4*D*H_q per visible pair, backward 2.5x that).

    python3 scripts/peers/packed_flex.py [--reps 20] [--dtype bf16]
"""
import argparse
import statistics
import sys

try:
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except Exception as e:  # noqa: BLE001 - any import failure means the peer cannot run here
    print(f"SKIP packed_flex: PyTorch with FlexAttention is unavailable: {e}")
    sys.exit(0)


def treepo_tree():
    """64-token prompt, 6 segments of 32 per leaf: 1 shared, 4 binary splits, 1 tail (16 leaves)."""
    nodes = [(None, 64), (0, 32)]

    def split(parent, levels):
        for _ in range(2):
            nid = len(nodes)
            nodes.append((parent, 32))
            if levels > 1:
                split(nid, levels - 1)
            else:
                nodes.append((nid, 32))

    split(1, 4)
    return nodes


def two_level_tree():
    return [(None, 512)] + [(0, 64)] * 16


def pack(nodes):
    """kv_row_end per token and the leaf sequence lengths (nodes in DFS pre-order)."""
    m = len(nodes)
    indptr = [0]
    for _, t in nodes:
        indptr.append(indptr[-1] + t)
    last = list(range(m))
    has_child = [False] * m
    for i in reversed(range(m)):
        p = nodes[i][0]
        if p is not None:
            has_child[p] = True
            last[p] = max(last[p], last[i])
    ends = []
    for i, (_, t) in enumerate(nodes):
        ends += [indptr[last[i] + 1]] * t
    depth = [0] * m
    for i, (p, _) in enumerate(nodes):
        if p is not None:
            depth[i] = depth[p] + nodes[p][1]
    leaves = [depth[i] + nodes[i][1] for i in range(m) if not has_child[i]]
    return ends, leaves


def chains(lengths):
    ends, start = [], 0
    for n in lengths:
        ends += [start + n] * n
        start += n
    return ends


def time_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def run_case(ends, hq, hkv, d, dtype, reps, attn):
    n = len(ends)
    end_t = torch.tensor(ends, device="cuda", dtype=torch.int32)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx < end_t[kv_idx])

    block_mask = create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device="cuda")
    q = torch.randn(1, hq, n, d, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(1, hkv, n, d, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(1, hkv, n, d, device="cuda", dtype=dtype, requires_grad=True)
    do = torch.randn(1, hq, n, d, device="cuda", dtype=dtype)

    def fwd():
        with torch.no_grad():
            attn(q, k, v, block_mask=block_mask, enable_gqa=True)

    def fwd_bwd():
        o = attn(q, k, v, block_mask=block_mask, enable_gqa=True)
        o.backward(do)

    pairs = sum(e - j for j, e in enumerate(ends))
    return pairs, time_ms(fwd, reps), time_ms(fwd_bwd, reps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--heads", default="32,8,128", help="H_q,H_kv,D")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIP packed_flex: no CUDA device")
        return
    hq, hkv, d = (int(x) for x in args.heads.split(","))
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    attn = torch.compile(flex_attention, dynamic=False)
    for label, nodes in [("treepo_64+6x32_w16", treepo_tree()), ("2-level_512+16x64", two_level_tree())]:
        tree_ends, leaves = pack(nodes)
        flat_ends = chains(leaves)
        tp, tf, tb = run_case(tree_ends, hq, hkv, d, dtype, args.reps, attn)
        fp, ff, fb = run_case(flat_ends, hq, hkv, d, dtype, args.reps, attn)
        for pass_, t_ms, f_ms, mult in [("fwd", tf, ff, 1.0), ("fwd+bwd", tb, fb, 3.5)]:
            tfl = lambda pairs, ms: 4.0 * d * hq * pairs * mult / (ms * 1e-3) / 1e12  # noqa: E731
            print(
                f"PEER packed_flex scenario={label} pass={pass_} dtype={args.dtype} heads={hq}/{hkv} "
                f"d={d} tokens_tree={len(tree_ends)} tokens_flat={len(flat_ends)} "
                f"reduction={len(flat_ends) / len(tree_ends):.3f} tree_ms={t_ms:.4f} flat_ms={f_ms:.4f} "
                f"ratio={f_ms / t_ms:.3f} tree_tflops={tfl(tp, t_ms):.2f} flat_tflops={tfl(fp, f_ms):.2f}"
            )


if __name__ == "__main__":
    main()
