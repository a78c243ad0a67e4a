"""treepo.advantages: the worked numbers of docs/treepo.md §2 (pinned in the Rust tests
trainer-ref/tests/advantage_*.rs), random cases against an independent NumPy implementation,
torch in / torch out, and bad inputs (exception type and message)."""

import numpy as np
import pytest
import torch

from treepo import advantages as A

# The paper's Figure 3 tree (docs/treepo.md §2.1): a, b, c11, c12, c21, c22, c23, c3.
PATHS = [[1], [2], [3, 4, 5], [3, 4, 6], [3, 7, 8], [3, 7, 9], [3, 7, 10], [3, 11]]
REWARDS = [-1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0]
Q = [0] * 8
RAW = [-0.75, 1.25, -0.4722, -0.4722, 1.0833, 1.0833, -0.9167, -0.7083]
WHITENED = [-0.8060, 1.3091, -0.5122, -0.5122, 1.1328, 1.1328, -0.9823, -0.7619]


def close4(got, want):
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=5e-5)


def test_worked_example_treepo():
    close4(A.treepo(Q, PATHS, REWARDS, [1] * 8), WHITENED)
    close4(A.treepo_raw(Q, PATHS, REWARDS), RAW)
    close4(A.compute(Q, PATHS, REWARDS, [1] * 8, estimator="tree_reinforce_plus_plus_baseline"),
           WHITENED)


def test_worked_example_terms():
    terms = A.treepo_subgroup_terms(Q, PATHS, REWARDS)
    assert terms[0] == [(0, -0.75, 8)]
    assert [(d, s) for d, _, s in terms[2]] == [(0, 8), (1, 6), (2, 2)]
    close4([v for _, v, _ in terms[2]], [-0.75, -0.6667, 0.0])
    assert [(d, s) for d, _, s in terms[6]] == [(0, 8), (1, 6), (2, 3)]
    close4([v for _, v, _ in terms[6]], [-0.75, -0.6667, -1.3333])
    assert [(d, s) for d, _, s in terms[7]] == [(0, 8), (1, 6)]


def test_worked_example_options():
    close4(A.treepo_raw(Q, PATHS, REWARDS, aggregation="group_size"),
           [-0.75, 1.25, -0.625, -0.625, 1.1765, 1.1765, -0.8235, -0.7143])
    c11 = (-0.75 + -2.0 / 3.0) / 2.0
    close4(A.treepo_raw(Q, PATHS, REWARDS, rejection="reject_zero_std"),
           [-0.75, 1.25, c11, c11, 1.0833, 1.0833, -0.9167, -0.7083])
    scaled = A.treepo(Q, PATHS, REWARDS, [1] * 8, whitening="scale_only")
    sigma = (1.25 - -0.75) / (1.3091 - -0.8060)
    np.testing.assert_allclose(scaled, np.array(RAW) / sigma, atol=5e-4)


def test_treepo_equals_its_parts():
    # Whitening of the raw averages, token-weighted, is exactly the estimator.
    tokens = [3, 1, 4, 1, 5, 9, 2, 6]
    raw = A.treepo_raw(Q, PATHS, REWARDS)
    np.testing.assert_array_equal(A.treepo(Q, PATHS, REWARDS, tokens), A.whiten(raw, tokens))


def test_flat_hand_computed():
    s = np.sqrt(1.0 / 3.0) + 1e-6
    np.testing.assert_allclose(A.grpo([0] * 4, [1, 0, 0, 1]), [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(A.dr_grpo([0] * 3, [1, 0, 0]), [2 / 3, -1 / 3, -1 / 3], atol=1e-12)
    np.testing.assert_allclose(A.rloo([0] * 3, [1, 0, 0]), [1.0, -0.5, -0.5], atol=1e-12)
    for f in (A.grpo, A.dr_grpo, A.rloo):
        assert f([3], [1.0]).tolist() == [0.0]
    # Interleaved queries are centred on their own means, in input order.
    np.testing.assert_allclose(A.dr_grpo([5, 2, 5, 2], [1, 3, 0, 1]), [0.5, 1.0, -0.5, -1.0])
    centred = [2 / 3, -1 / 3, -1 / 3]
    np.testing.assert_array_equal(A.reinforce_pp([0] * 3, [1, 0, 0], [5, 2, 2]),
                                  A.whiten(centred, [5, 2, 2]))


# The edge test tree of docs/treepo.md §2.3: 0 = R; 1 = a, 2 = b; a1, a2, a3 = 3, 4, 5;
# b1 = 6, b2 = 7; b21, b22 = 8, 9.
PARENTS = [None, 0, 0, 1, 1, 1, 2, 2, 7, 7]
NODE_REWARDS = [None, None, None, 1.0, 0.0, 1.0, 0.0, None, 1.0, 0.0]
EDGE_TABLE = {
    "tree_grpo": [0.3333, -0.5, 1, -1, 1, -1, 0, 1, -1],
    "tree_rl": [0.1925, -0.1925, 0.8333, -1.1667, 0.8333, -0.8333, 0.1179, 1, -1],
    "spo_tree": [0.2083, -0.2083, 0.3333, -0.6667, 0.3333, -0.25, 0.25, 0.5, -0.5],
}


@pytest.mark.parametrize("estimator", sorted(EDGE_TABLE))
def test_edge_table(estimator):
    got = A.compute_edges(PARENTS, NODE_REWARDS, estimator=estimator)
    assert np.isnan(got[0]), "the root has no edge"
    close4(got[1:], EDGE_TABLE[estimator])


def test_tree_grpo_options():
    z = 0.5 / (np.sqrt(1.5 / 5.0) + 1e-6)
    got = A.tree_grpo(PARENTS, NODE_REWARDS, std="sample")
    np.testing.assert_allclose(got[1:], [z / 3, -z / 2, z, -z, z, -z, 0, z, -z], atol=1e-12)
    lp = [0, 0, 0, -1, -2, -3, 0, 0, 0, 0]
    tok = [1, 1, 1, 1, 2, 4, 1, 1, 1, 1]
    z1 = 0.5 / (0.5 + 1e-6)
    for reduce, temperature, x in [("sum", 1.0, [-1, -2, -3]), ("sum", 2.0, [-0.5, -1, -1.5]),
                                   ("mean", 1.0, [-1, -1, -0.75])]:
        got = A.tree_grpo(PARENTS, NODE_REWARDS, weights="softmax", reduce=reduce,
                          temperature=temperature, old_logprob_sum=lp, num_tokens=tok)
        e = np.exp(x)
        assert abs(got[1] - (e / e.sum()) @ np.array([z1, -z1, z1])) < 1e-12
    window = [1, 0, 1, 1, 1, 1, 1, 0, 1, 1]
    got = A.tree_grpo(PARENTS, NODE_REWARDS, window=window)
    assert np.isnan(got[1]) and np.isnan(got[7]) and abs(got[2] + 0.5) < 5e-5
    assert np.count_nonzero(~np.isnan(got)) == 7


def test_spo_drops_zero_edges():
    got = A.spo_tree([None, 0, 1, 1, 1, 0], [None, None, 0.1, 0.1, 0.1, 0.3])
    assert np.flatnonzero(~np.isnan(got)).tolist() == [1, 5]


def test_leaf_estimators_on_a_topology():
    parents = [None, 0, 0, 0, 3, 4, 4, 3, 7, 7, 7, 3]
    rewards = [None, -1, 1, None, None, -1, -1, None, 1, 1, -1, -1]
    tokens = [0 if r is None else 1 for r in rewards]
    nodes, values = A.compute_edges(parents, rewards, estimator="treepo", num_tokens=tokens)
    assert nodes.tolist() == [1, 2, 5, 6, 8, 9, 10, 11]
    close4(values, WHITENED)


def test_torch_in_torch_out():
    r = torch.tensor(REWARDS)
    got = A.treepo(torch.zeros(8, dtype=torch.long), PATHS, r, torch.ones(8, dtype=torch.int32))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    close4(got.numpy(), WHITENED)
    assert isinstance(A.tree_rl(PARENTS, NODE_REWARDS), np.ndarray)


# ---- random cases against an independent NumPy implementation -------------------------------

def np_groups(q):
    return {k: np.flatnonzero(q == k) for k in np.unique(q)}


def np_grpo(q, r):
    out = np.zeros_like(r)
    for idx in np_groups(q).values():
        if len(idx) > 1:
            g = r[idx]
            out[idx] = (g - g.mean()) / (g.std(ddof=1) + 1e-6)
    return out


def np_dr_grpo(q, r):
    out = np.zeros_like(r)
    for idx in np_groups(q).values():
        out[idx] = r[idx] - r[idx].mean()
    return out


def np_rloo(q, r):
    out = np.zeros_like(r)
    for idx in np_groups(q).values():
        if len(idx) > 1:
            g = r[idx]
            out[idx] = g - (g.sum() - g) / (len(g) - 1)
    return out


def np_whiten(x, n):
    mean = (n * x).sum() / n.sum()
    var = (n * (x - mean) ** 2).sum() / (n.sum() - 1) if n.sum() > 1 else 0.0
    return (x - mean) / np.sqrt(var + 1e-8)


@pytest.mark.parametrize("seed", range(20))
def test_random_flat_against_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    q = rng.integers(0, 6, n)
    r = rng.normal(size=n) if seed % 2 else rng.integers(0, 2, n).astype(float)
    tok = rng.integers(1, 20, n)
    np.testing.assert_allclose(A.grpo(q, r), np_grpo(q, r), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(A.dr_grpo(q, r), np_dr_grpo(q, r), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A.rloo(q, r), np_rloo(q, r), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A.reinforce_pp(q, r, tok), np_whiten(np_dr_grpo(q, r), tok),
                               rtol=1e-9, atol=1e-9)
    # The same through the dispatcher, as torch tensors.
    got = A.compute(torch.from_numpy(q), None, torch.from_numpy(r), estimator="rloo")
    np.testing.assert_array_equal(got.numpy(), A.rloo(q, r))


# ---- bad inputs: the Rust crate's errors as ValueError, wrong types as TypeError -------------

BAD = [
    (lambda: A.grpo([], []), ValueError, "leaves is empty"),
    (lambda: A.dr_grpo([0, 0], [1.0, float("nan")]), ValueError, "leaf reward[1] = NaN"),
    (lambda: A.rloo([0, 0], [1.0, float("inf")]), ValueError, "is not finite"),
    (lambda: A.grpo([0, 0, 0], [1.0, 2.0]), ValueError, "rewards: expected length 3, got 2"),
    (lambda: A.treepo([0, 0], [[1, 2], [1, 2]], [1.0, 0.0], [1, 1]), ValueError,
     "repeats another leaf's path"),
    (lambda: A.treepo([0, 0], [[1], [2]], [1.0, 0.0], [0, 0]), ValueError,
     "response tokens of the batch (whitening) is empty"),
    (lambda: A.treepo([0, 0], [[1], [2]], [1.0, 0.0], [1, -1]), ValueError,
     "num_tokens[1] = -1 is negative"),
    (lambda: A.treepo([0, 0], [[1], [-2]], [1.0, 0.0], [1, 1]), ValueError,
     "paths[1] holds node id -2"),
    (lambda: A.treepo([0, 0], [[1]], [1.0, 0.0], [1, 1]), ValueError,
     "paths: expected length 2, got 1"),
    (lambda: A.treepo([0, 0], [[1], [2]], [1.0, 0.0], None), ValueError, "pass num_tokens"),
    (lambda: A.treepo([0], [[1]], [1.0], [1], aggregation="median"), ValueError,
     "aggregation = \"median\": expected one of average, group_size"),
    (lambda: A.compute([0], [[1]], [1.0], [1], estimator="ppo"), ValueError,
     "estimator = \"ppo\""),
    (lambda: A.compute([0], [[1]], [1.0], [1], estimator="tree_rl"), ValueError,
     "estimator `tree_rl` produces per-edge advantages"),
    (lambda: A.grpo([-1], [1.0]), ValueError, "queries[0] = -1 is negative"),
    (lambda: A.grpo([0], ["x"]), TypeError, "rewards: expected"),
    (lambda: A.grpo([0.5], [1.0]), TypeError, "queries: expected"),
    (lambda: A.grpo([0], [[1.0]]), ValueError, "expected a 1-D sequence"),
    (lambda: A.tree_rl([None, 2, 0], [None, 1.0, None]), ValueError,
     "node 1 has parent 2; parents must precede their children"),
    (lambda: A.tree_rl([None, 0], [None, None]), ValueError, "leaf 1 has no reward"),
    (lambda: A.tree_rl([None, 0, 1], [None, 1.0, 0.0]), ValueError, "has children and a reward"),
    (lambda: A.tree_rl([None], [None]), ValueError, "query root 0 has no children"),
    (lambda: A.tree_rl([None, 0], [None]), ValueError, "node rewards: expected length 2, got 1"),
    (lambda: A.tree_rl([], []), ValueError, "topology nodes is empty"),
    (lambda: A.tree_grpo(PARENTS, NODE_REWARDS, weights="softmax", temperature=0.0), ValueError,
     "softmax temperature = 0 must be > 0"),
    (lambda: A.tree_grpo(PARENTS, NODE_REWARDS, weights="softmax", reduce="mean",
                         num_tokens=[0] * 10), ValueError, "mean log-prob is undefined"),
    (lambda: A.tree_grpo(PARENTS, NODE_REWARDS, std="iqr"), ValueError, "std = \"iqr\""),
    (lambda: A.tree_rl(PARENTS, NODE_REWARDS[:-1] + [float("inf")]), ValueError,
     "leaf reward[9] = inf is not finite"),
    (lambda: A.whiten([1.0], [1, 2]), ValueError, "expected length 1, got 2"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input(case):
    call, exc, fragment = BAD[case]
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
