#!/usr/bin/env python3
"""Regenerates the Hugging Face parity fixtures in trainer-ref/tests/fixtures/hf/.

Builds tiny random Qwen2ForCausalLM and LlamaForCausalLM models (tied and untied embeddings,
GQA, Qwen2's q/k/v biases, Llama-3 RoPE scaling), writes each with `save_pretrained`
(config.json + model.safetensors, f32) and the logits HF computes for fixed token ids into
`expected.safetensors` (tensors `input_ids` int64 [T] and `logits` f32 [T, V]).

Every parameter is drawn at random (HF's own init zeroes biases and sets norms to 1, which would
hide a missing bias or norm). The fixtures are committed; this script is only needed to make
them again. It needs PyTorch and transformers (a large one-time install):

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers safetensors
    /tmp/hf/bin/python scripts/make_hf_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer-ref", "tests", "fixtures", "hf")
COMMON = dict(vocab_size=48, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)
CASES = {
    "qwen2-tied": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True, rope_theta=1e6)),
    "qwen2-untied": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=False, rope_theta=1e4)),
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=False, rope_theta=5e5, num_key_value_heads=1)),
    "llama3-scaled": (LlamaConfig, LlamaForCausalLM, dict(
        tie_word_embeddings=True, rope_theta=5e5, max_position_embeddings=256,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
}


def main():
    torch.manual_seed(20261122)
    for name, (cfg_cls, model_cls, extra) in CASES.items():
        cfg = cfg_cls(**{**COMMON, **extra})
        model = model_cls(cfg).float().eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if pname.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        # Positions past original_max_position_embeddings exercise the Llama-3 bands.
        ids = torch.randint(0, cfg.vocab_size, (1, 40))
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float().contiguous()
        save_file({"input_ids": ids[0].to(torch.int64).contiguous(), "logits": logits},
                  os.path.join(d, "expected.safetensors"))
        for extra_file in ("generation_config.json",):
            p = os.path.join(d, extra_file)
            if os.path.exists(p):
                os.remove(p)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} params, logits {tuple(logits.shape)}")
    return 0




# --- A pinned training trajectory, computed by PyTorch --------------------------------------
# A tiny Qwen2 model, two rollout trees (written as parents + tokens + leaves), and the SFT loss
# of 10 AdamW steps on all their leaves (mean NLL over every leaf's response tokens), with
# decoupled weight decay on matrices/embeddings only, global grad-norm clipping and a linear
# warm-up + cosine schedule — the same definition as treepo_trainer::train. The Rust test packs
# the trees (shared prefixes once) and must reproduce these losses.
TRAJ_TREES = [
    {"nodes": [[None, [3, 1, 4]], [0, [1, 5]], [1, [9, 2, 6]], [1, [5, 3]], [0, [5, 8, 9, 7]], [4, [9]], [4, [3, 2, 3]]],
     "leaves": [2, 3, 5, 6]},
    {"nodes": [[None, [8, 4, 6, 2]], [0, [6, 4, 3]], [1, [3, 8]], [1, [7, 9, 5]], [0, [0, 2]]],
     "leaves": [2, 3, 4]},
]
TRAJ_OPT = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0,
            "warmup_steps": 2, "total_steps": 10, "min_lr": 3e-4}


def leaf_sequences(tree):
    out = []
    for leaf in tree["leaves"]:
        chain, n = [], leaf
        while n is not None:
            chain.append(n)
            n = tree["nodes"][n][0]
        chain.reverse()
        prompt = tree["nodes"][0][1]
        resp = [t for n in chain[1:] for t in tree["nodes"][n][1]]
        out.append((prompt, resp))
    return out


def lr_at(step, o):
    import math
    if o["warmup_steps"] > 0 and step <= o["warmup_steps"]:
        return o["lr"] * step / o["warmup_steps"]
    span = max(o["total_steps"] - o["warmup_steps"], 1)
    t = min((step - o["warmup_steps"]) / span, 1.0)
    return o["min_lr"] + 0.5 * (o["lr"] - o["min_lr"]) * (1 + math.cos(math.pi * t))


def trajectory_fixture():
    torch.manual_seed(7)
    cfg = Qwen2Config(vocab_size=11, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=1e4, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg).float()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if pname.endswith("norm.weight") else 0.3 * torch.randn_like(p))
    d = os.path.join(OUT, "..", "trajectory")
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    seqs = [s for t in TRAJ_TREES for s in leaf_sequences(t)]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("norm.weight") or n.endswith(".bias"))]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("norm.weight") or n.endswith(".bias")]
    o = TRAJ_OPT
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    losses = []
    for step in range(1, o["total_steps"] + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, o)
        opt.zero_grad()
        total, count = 0.0, 0
        for prompt, resp in seqs:
            ids = torch.tensor([prompt + resp])
            logits = model(input_ids=ids).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
            targets = torch.tensor(resp)
            rows = torch.arange(len(prompt) - 1, len(prompt) + len(resp) - 1)
            total = total - logp[rows, targets].sum()
            count += len(resp)
        loss = total / count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        losses.append(loss.item())
    with open(os.path.join(d, "trajectory.json"), "w") as f:
        json.dump({"trees": TRAJ_TREES, "optimizer": o, "losses": losses}, f, indent=1)
    print("trajectory losses:", losses)


if __name__ == "__main__":
    main()
    trajectory_fixture()
