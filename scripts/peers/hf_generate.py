#!/usr/bin/env python3
"""PyTorch peer of `cargo bench -p treepo-benches --bench engine` (tree vs sequential part).

The same tiny model shape as `ModelConfig::tiny` (Qwen2: 4 layers, hidden 128, intermediate 384,
4 query / 2 KV heads of 32, tied embeddings, a 21-symbol vocabulary), random weights,
sampled with Hugging Face `generate`: 4 prompts × w samples (`num_return_sequences`), d·l new
tokens each with no stop token (`min_new_tokens = max_new_tokens`), i.e. the "no stop token"
regime of the Rust benchmark (w = 16 and w = 64, d = 14, l = 8). Weights do not matter for timing
once every path runs the full length.

Output (one line per w, parsable by scripts/gpu-check.sh):
  PEER hf_generate w=<w> trajectories=<n> tokens=<n> s=<median> traj_per_s=<x> tok_per_s=<x>
Timing: wall clock around `generate` with CUDA synchronisation, median of --iters runs after one
warm-up.

Usage: python3 scripts/peers/hf_generate.py [--iters 5] [--dtype float32|bfloat16]
       [--model DIR --prompts FILE] [--widths 16,64] [--device cuda|cpu]

With `--model DIR` (a checkpoint our trainer wrote: HF `config.json` + `model.safetensors`) and
`--prompts FILE` (JSON list of token-id lists) it samples that checkpoint from those prompts:
`cargo bench -p treepo-benches --bench hf_peer` runs it so, on the checkpoint and prompts our
engine is timed on, and prints the ratio.
"""

import argparse
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--depth", type=int, default=14)
    ap.add_argument("--segment", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--device", default="cuda", help="cuda or cpu")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: random tiny)")
    ap.add_argument("--prompts", default=None, help="JSON file: a list of token-id lists")
    ap.add_argument("--widths", default="16,64", help="samples per prompt, comma-separated")
    args = ap.parse_args()
    try:
        import torch
        from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM
    except ImportError as e:
        print(f"SKIP hf_generate: {e}")
        return 0
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("SKIP hf_generate: no CUDA device")
        return 0
    dtype = getattr(torch, args.dtype)
    cfg = Qwen2Config(
        vocab_size=21,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    if args.model:
        # use_kernels=False: transformers 5 otherwise asks for the Hub `kernels` package.
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                     use_kernels=False)
        model = model.to(dev, dtype).eval()
        cfg = model.config
    else:
        model = Qwen2ForCausalLM(cfg).to(dev, dtype).eval()
    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    new = args.depth * args.segment
    if args.prompts:
        import json

        with open(args.prompts) as f:
            ids = json.load(f)
        if len({len(p) for p in ids}) != 1:
            print("SKIP hf_generate: prompts of different lengths (generate would pad them)")
            return 0
        prompts = torch.tensor(ids, device=dev)
        args.prompt = prompts.shape[1]
    else:
        prompts = torch.randint(1, cfg.vocab_size, (args.queries, args.prompt), device=dev)
    for w in (int(x) for x in args.widths.split(",")):
        def run():
            sync()
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    prompts,
                    attention_mask=torch.ones_like(prompts),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    num_return_sequences=w,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    pad_token_id=0,
                    eos_token_id=None,
                )
            sync()
            return time.perf_counter() - t, out

        run()
        times = []
        for _ in range(args.iters):
            s, out = run()
            times.append(s)
        s = statistics.median(times)
        traj = out.shape[0]
        tokens = traj * (out.shape[1] - args.prompt)
        print(
            f"PEER hf_generate w={w} trajectories={traj} tokens={tokens} s={s:.4f} "
            f"traj_per_s={traj / s:.1f} tok_per_s={tokens / s:.0f} dtype={args.dtype} device={dev}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
