"""treepo.TreeSampler driving a scripted pure-Python engine through the Rust sampler: the tree
respects the config, paths / tokens / log-probs are consistent, every node is released, the
sampler's rules (sample_logits) match a direct computation, and an exception raised by the engine
comes back as that very exception."""

import math

import numpy as np
import pytest

import treepo
from treepo import advantages as A

V = 16  # vocabulary of the toy engine
EOS = 1


class ToyEngine:
    """Deterministic: token ``i`` of a request is ``floor(u * V)`` with the request's keyed
    uniform, its log-prob ``-ln V`` (a uniform distribution). Keeps every node's context and
    checks the engine contract (no append to a node with children, no use after release)."""

    def __init__(self, fail_at=None):
        self.nodes = {}
        self.next = 0
        self.calls = 0
        self.fail_at = fail_at
        self.raised = None
        self.released = []

    def _new(self, ctx):
        h = ("node", self.next)  # any Python object is a handle
        self.next += 1
        self.nodes[h] = {"ctx": list(ctx), "children": 0}
        return h

    def prefill(self, prompts):
        return [self._new(p) for p in prompts]

    def fork(self, node, n):
        self.nodes[node]["children"] += n
        return [self._new(self.nodes[node]["ctx"]) for _ in range(n)]

    def decode_segment(self, requests, params):
        self.calls += 1
        if self.fail_at == self.calls:
            self.raised = KeyError("the model fell over")
            raise self.raised
        outs = []
        for req in requests:
            node = self.nodes[req.node]
            assert node["children"] == 0, "append to a frozen node"
            toks = []
            for u in req.uniforms():
                toks.append(int(u * V))
                if toks[-1] in params.stop:
                    break
            node["ctx"] += toks
            outs.append(treepo.SegmentOutput(toks, [-math.log(V)] * len(toks)))
        return outs

    def release(self, node):
        del self.nodes[node]
        self.released.append(node)


CONFIG = dict(tree_max_depth=4, tree_max_token_per_step=3, tree_fixed_step_div=2,
              tree_max_width=6, stop_token_ids=[EOS], seed=7)
PROMPTS = [[3, 4, 5], [6, 7], [8]]


def check_tree(res, cfg):
    d, l, w = cfg["tree_max_depth"], cfg["tree_max_token_per_step"], cfg["tree_max_width"]
    for q, prompt in zip(res.queries, PROMPTS):
        assert q.prompt == prompt and q.status == "complete"
        assert len(q.leaves) == w
        assert q.parents[0] == -1 and all(0 <= p < i for i, p in enumerate(q.parents) if i)
        assert all(len(t) <= l for t in q.node_tokens) and len(q.node_tokens[0]) == 0
        assert q.depths.max() <= d
        assert len({tuple(leaf.path) for leaf in q.leaves}) == w, "paths are distinct"
        for leaf in q.leaves:
            # The path is a chain from a child of the prompt node down to the leaf's node.
            assert leaf.path[-1] == leaf.node and q.parents[leaf.path[0]] == 0
            assert all(q.parents[b] == a for a, b in zip(leaf.path, leaf.path[1:]))
            toks = np.concatenate([q.node_tokens[n] for n in leaf.path])
            lps = np.concatenate([q.node_logprobs[n] for n in leaf.path])
            np.testing.assert_array_equal(leaf.tokens, toks)
            np.testing.assert_array_equal(leaf.logprobs, lps)
            assert len(leaf.tokens) == leaf.response_len <= d * l
            np.testing.assert_allclose(leaf.logprobs, -math.log(V), rtol=1e-6)
            stopped = EOS in leaf.tokens.tolist()
            assert (leaf.finish_reason == "eos") == stopped
            if stopped:
                assert leaf.tokens[-1] == EOS and leaf.tokens.tolist().count(EOS) == 1
            else:
                assert leaf.finish_reason in ("max_depth", "max_tokens")


def test_tree_shape_and_consistency():
    engine = ToyEngine()
    sampler = treepo.TreeSampler(CONFIG)
    res = sampler.sample(engine, PROMPTS)
    check_tree(res, CONFIG)
    assert engine.nodes == {}, "every node is released"
    assert res.cost["releases"] == len(engine.released)
    # Deterministic: the same seed gives the same tree; another seed another one.
    again = treepo.TreeSampler(**CONFIG).sample(ToyEngine(), PROMPTS)
    assert [lf.tokens.tolist() for lf in again.leaves] == [lf.tokens.tolist() for lf in res.leaves]
    other = treepo.TreeSampler(CONFIG, seed=8).sample(ToyEngine(), PROMPTS)
    assert [lf.tokens.tolist() for lf in other.leaves] != [lf.tokens.tolist() for lf in res.leaves]


def test_wider_config_and_sequential():
    cfg = dict(CONFIG, tree_max_width=8, tree_fixed_step_div=3, tree_max_depth=3)
    check_tree(treepo.TreeSampler(cfg).sample(ToyEngine(), PROMPTS), cfg)
    seq = treepo.TreeSampler(cfg).sample_sequential(ToyEngine(), PROMPTS)
    assert seq.mode == "sequential"
    assert all(len(q.leaves) == 8 for q in seq.queries)


def test_advantages_from_the_result():
    res = treepo.TreeSampler(CONFIG).sample(ToyEngine(), PROMPTS)
    rewards = [[float(EOS in lf.tokens.tolist()) for lf in q.leaves] for q in res.queries]
    inputs = res.advantage_inputs(rewards)
    adv = A.compute(**inputs, estimator="treepo")
    assert adv.shape == (18,) and np.isfinite(adv).all()
    flat = [r for rs in rewards for r in rs]
    np.testing.assert_array_equal(A.compute(**res.advantage_inputs(flat)), adv)
    # The same leaves as a topology give the same TreePO values (leaf order: ascending node).
    kwargs, origin = res.topology(rewards)
    nodes, values = A.compute_edges(**kwargs, estimator="treepo")
    by_leaf = {(qi, lf.node): a for (qi, lf), a in zip(
        [(qi, lf) for qi, q in enumerate(res.queries) for lf in q.leaves], adv)}
    np.testing.assert_allclose([by_leaf[origin[n]] for n in nodes], values, rtol=1e-12,
                               atol=1e-12)
    edge = A.tree_rl(kwargs["parents"], kwargs["rewards"])
    assert len(edge) == len(origin)


def test_engine_exception_is_reraised_as_is():
    engine = ToyEngine(fail_at=2)
    with pytest.raises(KeyError) as info:
        treepo.TreeSampler(CONFIG).sample(engine, PROMPTS)
    assert info.value is engine.raised
    assert engine.nodes == {}, "the sampler released what it held before returning"


def test_engine_contract_errors():
    class BadOutput(ToyEngine):
        def decode_segment(self, requests, params):
            return [{"tokens": "abc", "logprobs": []} for _ in requests]

    with pytest.raises(TypeError, match="output 0: tokens must be token ids"):
        treepo.TreeSampler(CONFIG).sample(BadOutput(), PROMPTS)

    class TooFew(ToyEngine):
        def decode_segment(self, requests, params):
            return super().decode_segment(requests, params)[:-1]

    with pytest.raises(RuntimeError, match="engine broke its contract during decode_segment"):
        treepo.TreeSampler(CONFIG).sample(TooFew(), PROMPTS)


def test_hooks_and_their_exceptions():
    # Every segment "holds an answer": a stop token then finishes the path as `finished`.
    res = treepo.TreeSampler(CONFIG, has_answer=lambda seg: True).sample(ToyEngine(), PROMPTS)
    reasons = {lf.finish_reason for lf in res.leaves}
    assert "eos" not in reasons and "finished" in reasons

    def boom(seg):
        raise ZeroDivisionError("hook")

    with pytest.raises(ZeroDivisionError, match="hook"):
        treepo.TreeSampler(CONFIG, is_repetition=boom).sample(ToyEngine(), PROMPTS)


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown field"):
        treepo.TreeSampler(tree_depth=3)
    with pytest.raises(ValueError, match="tree_max_token_per_step"):
        treepo.TreeSampler(tree_max_token_per_step=0)
    with pytest.raises(ValueError, match="tree_div_policy"):
        treepo.TreeSampler(tree_div_policy="random")
    with pytest.raises(TypeError, match="not a config value"):
        treepo.TreeSampler(seed={"a": 1})
    with pytest.raises(ValueError, match="duplicate query id 3"):
        treepo.TreeSampler(CONFIG).sample(ToyEngine(), PROMPTS[:2], ids=[3, 3])
    assert "tree_max_depth = 4" in treepo.TreeSampler(CONFIG).config_toml


def test_sample_logits_follows_the_sampler_rules():
    logits = np.array([0.5, 2.0, -1.0, 2.0, 0.0], np.float32)
    class Params:  # the fields of the DecodeParams an engine receives
        temperature, top_k, top_p, entropy = 1.0, 0, 1.0, True

    lsm = logits - np.log(np.exp(logits.astype(np.float64)).sum())
    cdf = np.cumsum(np.exp(lsm))
    for u in (0.0, 0.3, 0.6, 0.999):
        tok, lp, ent = treepo.sample_logits(logits, Params, u)
        assert tok == int(np.searchsorted(cdf, u, side="right"))
        assert abs(lp - lsm[tok]) < 1e-6
        assert abs(ent + (np.exp(lsm) * lsm).sum()) < 1e-5
    Params.temperature = 0.0  # greedy: the first of the tied maxima
    assert treepo.sample_logits(logits, Params, 0.9)[:2] == (1, 0.0)
    Params.temperature, Params.top_k = 1.0, 2  # top-2 keeps both tied 2.0 logits
    tok, lp, _ = treepo.sample_logits(logits, Params, 0.9)
    assert tok == 3 and abs(lp - math.log(0.5)) < 1e-6
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        treepo.sample_logits(np.array([np.nan], np.float32), Params, 0.5)
