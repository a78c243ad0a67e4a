"""Python-side costs of the treepo bindings, measured in one run:

1. call overhead of TreeDecode.plan / TreeDecode.run / merge_states from Python (µs per call,
   tiny shapes, so the time is the binding: DLPack imports, checks, GIL release, dispatch);
2. tree_attention forward+backward vs torch SDPA with the equivalent dense boolean mask on the
   same TreePO-like tree (ratio measured in interleaved rounds in this process); with
   `--device cuda` also vs FlexAttention (`torch.compile`d) with the tree's mask_mod —
   FlexAttention has no CPU backward, so on the CPU it is left out.

Run: python bindings/python/bench/bench_overhead.py [--quick] [--device cpu|cuda]
     [--dtype float32|float16|bfloat16]
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch

import treepo


def per_call_us(fn, reps, rounds=5):
    """Median over rounds of the mean µs per call."""
    fn()
    best = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best.append((time.perf_counter() - t0) / reps * 1e6)
    return statistics.median(best)


def treepo_like_tree(prompt=64, segment=32, depth=6, splits=(1, 2, 3, 4)):
    """A prompt then `depth` segments per path; the paths split in two at the given depths."""
    parents, counts = [-1], [prompt]

    def grow(parent, level):
        if level == depth:
            return
        for _ in range(2 if level in splits else 1):
            me = len(parents)
            parents.append(parent)
            counts.append(segment)
            grow(me, level + 1)

    grow(0, 0)
    return treepo.PackedTree.pack(parents, counts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (part 2)")
    ap.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (part 2)")
    args = ap.parse_args()
    reps = 200 if args.quick else 2000
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()} (1/5/15 min)")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), treepo "
          f"{treepo.__version__}")

    # 1. call overhead, tiny shapes: 4 sequences sharing one page, 1 own page each.
    page, hq, hkv, d = 16, 2, 1, 64
    indptr = np.array([0, 2, 4, 6, 8], np.int32)
    indices = np.array([0, 1, 0, 2, 0, 3, 0, 4], np.int32)
    last = np.array([3, 5, 7, 9], np.int32)
    dec = treepo.TreeDecode()
    plan = lambda: dec.plan(indptr, indices, last, hq, hkv, d, page, num_pages=8)  # noqa: E731
    plan()
    kv = torch.randn(8, 2, page, hkv, d)
    q = torch.randn(4, hq, d)
    out, lse = torch.empty(4, hq, d), torch.empty(4, hq)
    run = lambda: dec.run(q, kv, out=out, lse=lse)  # noqa: E731
    vs, ss = torch.randn(4, 2, hq, d), torch.randn(4, 2, hq)
    mo, ml = torch.empty(4, hq, d), torch.empty(4, hq)
    merge = lambda: treepo.merge_states(vs, ss, out=mo, lse=ml)  # noqa: E731
    sdpa_q, sdpa_k = torch.randn(1, hq, 1, d), torch.randn(1, hq, 40, d)
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(sdpa_q, sdpa_k, sdpa_k)  # noqa: E731
    for name, fn in [("TreeDecode.plan", plan), ("TreeDecode.run", run),
                     ("merge_states", merge), ("(torch SDPA, same scale, for scale)", sdpa)]:
        print(f"OVERHEAD {name:38s} {per_call_us(fn, reps):8.1f} us/call")

    # 2. tree_attention fwd+bwd vs SDPA with the dense mask (and FlexAttention on CUDA).
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    tree = treepo_like_tree()
    n, hq, hkv, d = tree.num_tokens, 8, 2, 64
    mask = tree.dense_mask().to(dev)
    q = torch.randn(n, hq, d, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(n, hkv, d, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(n, hkv, d, device=dev, dtype=dtype, requires_grad=True)
    d_o = torch.randn(n, hq, d, device=dev, dtype=dtype)
    heads_first = [x.transpose(0, 1) for x in (q, k, v)]

    def ours():
        treepo.tree_attention(q, k, v, tree).backward(d_o)

    def peer():
        o = torch.nn.functional.scaled_dot_product_attention(
            *(x.transpose(0, 1) for x in (q, k, v)), attn_mask=mask, enable_gqa=True,
        ).transpose(0, 1)
        o.backward(d_o)

    peers = {"tree_attention": ours, "sdpa_dense_mask": peer}
    if dev.type == "cuda":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        end = torch.as_tensor(tree.kv_row_end, dtype=torch.int64, device=dev)
        block_mask = create_block_mask(
            lambda b, h, qi, ki: (ki <= qi) & (qi < end[ki]), None, None, n, n, device=dev
        )
        flex_c = torch.compile(flex_attention)

        def flex():
            o = flex_c(*(x[None] for x in heads_first), block_mask=block_mask,
                       enable_gqa=True)[0].transpose(0, 1)
            o.backward(d_o)

        peers["flex_tree_mask"] = flex

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return (time.perf_counter() - t0) * 1e3

    times = {name: [] for name in peers}
    rounds = 3 if args.quick else 9
    for fn in peers.values():  # warm-up (and compile)
        fn()
    for _ in range(rounds):  # interleaved: each round runs every peer
        for name, fn in peers.items():
            times[name].append(timed(fn))
    print(f"TREE N={n} tokens ({tree.num_leaves} leaves, flat {tree.flat_tokens}), H_q {hq}, "
          f"H_kv {hkv}, D {d}, {args.dtype} on {dev}, {rounds} interleaved rounds")
    for name in peers:
        print(f"FWD+BWD {name:16s} {statistics.median(times[name]):8.2f} ms (median)")
    for name in peers:
        if name != "tree_attention":
            ratio = statistics.median(
                p / o for p, o in zip(times[name], times["tree_attention"])
            )
            print(f"RATIO {name}/tree_attention {ratio:.2f}x (median of per-round ratios)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
