"""HFEngine: TreePO sampling of a tiny transformers causal LM built here from a config (nothing
is downloaded). The tree's per-token log-probs equal those of a plain forward of each full leaf
sequence; then advantages are computed from the result."""

import numpy as np
import pytest
import torch

import treepo

transformers = pytest.importorskip("transformers")

EOS = 2


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=EOS, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg).eval()


def leaf_logprobs(model, prompt, tokens):
    """Per-token log-probs of ``tokens`` after ``prompt``: one plain forward of the sequence."""
    seq = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0].float(), -1)
    p = len(prompt)
    return logp[p - 1:-1].gather(-1, seq[0, p:, None])[:, 0]


@pytest.mark.parametrize("use_cache", [True, False])
def test_tree_logprobs_match_a_plain_forward(use_cache):
    model = tiny_llama()
    engine = treepo.HFEngine(model, use_cache=use_cache)
    assert engine.stop_token_ids == [EOS]
    sampler = treepo.TreeSampler(tree_max_depth=3, tree_max_token_per_step=4,
                                 tree_fixed_step_div=2, tree_max_width=4,
                                 stop_token_ids=engine.stop_token_ids, seed=3)
    prompts = [[1, 10, 11, 12], [1, 20, 21]]
    res = sampler.sample(engine, prompts)
    assert engine.kv_pages_in_use() == 0, "every node released"
    for q in res.queries:
        assert len(q.leaves) == 4
        for leaf in q.leaves:
            assert len(leaf.tokens) > 0
            ref = leaf_logprobs(model, q.prompt, leaf.tokens)
            torch.testing.assert_close(torch.from_numpy(leaf.logprobs), ref, atol=1e-5, rtol=0)
    # Advantages from the result: reward = the leaf ends with EOS or holds token 7 (any rule).
    rewards = [[float(7 in lf.tokens or lf.finish_reason == "eos") for lf in q.leaves]
               for q in res.queries]
    adv = treepo.advantages.compute(**res.advantage_inputs(rewards), estimator="treepo")
    assert adv.shape == (8,) and np.isfinite(adv).all()
    kwargs, _ = res.topology(rewards)
    edge = treepo.advantages.tree_grpo(**kwargs)
    roots = np.array([p is None for p in kwargs["parents"]])
    assert roots.sum() == 2 and np.isnan(edge[roots]).all() and np.isfinite(edge[~roots]).all()


def test_sampling_params_are_followed():
    model = tiny_llama(1)
    engine = treepo.HFEngine(model, eos_token_id=[EOS, 3])
    assert engine.stop_token_ids == [EOS, 3]
    # Greedy: every leaf of a query is the same argmax continuation, with log-prob 0 under the
    # processed (one-hot) distribution, as the sampler's contract says.
    greedy = treepo.TreeSampler(tree_max_depth=2, tree_max_token_per_step=3,
                                tree_fixed_step_div=2, tree_max_width=2, temperature=0.0,
                                tree_fallback_policy="no_fallback", seed=0)
    res = greedy.sample(engine, [[1, 5, 6]])
    toks = [lf.tokens.tolist() for lf in res.leaves]
    assert toks[0] == toks[1]
    assert all((lf.logprobs == 0).all() for lf in res.leaves)
    seq = [1, 5, 6]
    with torch.no_grad():
        for t in toks[0]:
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            assert nxt == t
            seq.append(t)
    # Top-k 1 is greedy too.
    top1 = treepo.TreeSampler(tree_max_depth=2, tree_max_token_per_step=3, tree_fixed_step_div=2,
                              tree_max_width=2, top_k=1, tree_fallback_policy="no_fallback")
    assert [lf.tokens.tolist() for lf in top1.sample(engine, [[1, 5, 6]]).leaves] == toks


def test_recipe_2_runs_as_written(capsys):
    """docs/python.md's Recipe 2, run exactly as written (as test_docs.py runs Recipe 1)."""
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[3] / "docs" / "python.md"
    m = re.search(r"<!-- test: recipe-2 -->\s*```python\n(.*?)```", doc.read_text(), re.S)
    assert m, f"no block tagged recipe-2 in {doc}"
    ns = {"__name__": "recipe_2"}
    exec(compile(m.group(1), f"{doc}:recipe-2", "exec"), ns)
    assert ns["adv"].shape == (8,) and np.isfinite(ns["adv"]).all()
    assert ns["engine"].kv_pages_in_use() == 0
    assert capsys.readouterr().out.count("advantage ") == 8
