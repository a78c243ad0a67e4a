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


if __name__ == "__main__":
    sys.exit(main())
