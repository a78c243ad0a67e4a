"""treepo.distributed on a local Ray cluster (docs/distributed.md): the distributed run equals
the single-process reference exactly (advantages, summed gradients, weights) for the same seed
and worker counts; a rollout worker killed mid-step is replaced and its queries re-issued with
the same result; a shard from another policy version is refused; nothing is left running.

Skipped loudly where Ray is not installed (``pip install ray``)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import treepo
from treepo import distributed as dist

ray = pytest.importorskip("ray", reason="SKIP distributed: Ray is not installed")

# A small parity-cot run: a C = 32 model, 8 queries of trees of width 4 per step, 2
# mini-batches; a few SFT steps so the policy is not uniform. A random model never answers
# right: the overlong penalty makes the rewards (and so the advantages) differ.
CONFIG = """
[run]
seed = 3
kv_pages = 1024
[task]
name = "parity-cot"
min_bits = 6
max_bits = 6
[model]
hidden_size = 32
intermediate_size = 64
layers = 2
heads = 2
kv_heads = 1
max_positions = 64
[sft]
steps = 10
batch_size = 8
[rl]
steps = 2
queries_per_step = 8
mini_batches = 2
dynamic_sampling_rounds = -1
overlong_buffer = 8
[rl.sampler]
tree_max_depth = 3
tree_max_token_per_step = 4
tree_fixed_step_div = 2
tree_max_width = 4
max_response_length = 12
[eval]
problems = 8
k = 2
"""


def quiet(_msg):
    pass


def descendants():
    """``(pid, args)`` of every process below this one (Ray's raylet, GCS and workers are)."""
    rows = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True,
                          text=True).stdout.splitlines()
    procs = []
    for r in rows:
        cols = r.split(None, 2)
        procs.append((int(cols[0]), int(cols[1]), cols[2] if len(cols) > 2 else ""))
    mine, found = {os.getpid()}, True
    while found:
        found = False
        for pid, ppid, _ in procs:
            if ppid in mine and pid not in mine:
                mine.add(pid)
                found = True
    return [(pid, a) for pid, _, a in procs if pid in mine - {os.getpid()} and "ps -eo" not in a]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (each ``ray.init`` costs seconds); afterwards
    nothing of it may still run."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    deadline = time.monotonic() + 20
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = descendants()
    assert not left, f"processes left running after ray.shutdown(): {left}"


def assert_same(a, b):
    assert len(a.trace) == len(b.trace)
    for s, (x, y) in enumerate(zip(a.trace, b.trace)):
        assert np.array_equal(x["advantages"], y["advantages"]), f"step {s}: advantages"
        assert len(x["grads"]) == len(y["grads"]) == 2
        for mb, (g, h) in enumerate(zip(x["grads"], y["grads"])):
            assert g.dtype == np.float32 and np.any(g != 0), f"step {s} mini-batch {mb}"
            assert np.array_equal(g, h), (
                f"step {s} mini-batch {mb}: max |diff| {np.abs(g - h).max():.3e}")
    assert np.array_equal(a.weights, b.weights), f"weights: max |diff| " \
        f"{np.abs(a.weights - b.weights).max():.3e}"
    assert [m["reward"] for m in a.steps] == [m["reward"] for m in b.steps]


@pytest.mark.parametrize("rollouts,learners", [(2, 2), (1, 3)])
def test_distributed_equals_single_process(cluster, rollouts, learners):
    ref = dist.run_local(CONFIG, rollouts, learners, return_trace=True, evaluate=False, log=quiet)
    got = dist.run(CONFIG, rollouts, learners, return_trace=True, evaluate=False, log=quiet)
    assert_same(got, ref)
    assert got.restarts == 0


def leaf_records(shards):
    """``(queries, paths, rewards, num_tokens)`` of every leaf of ``shards`` (batch order)."""
    queries, paths, rewards, lengths = [], [], [], []
    q0 = 0
    for s in shards:
        a = s.arrays
        for q in range(len(a["problem_index"])):
            base = int(a["node_ptr"][q])
            for li in range(int(a["leaf_ptr"][q]), int(a["leaf_ptr"][q + 1])):
                path, n = [], int(a["leaf_node"][li])
                while a["parent"][base + n] >= 0:
                    path.append(n)
                    n = int(a["parent"][base + n])
                queries.append(q0 + q)
                paths.append(path[::-1])
                rewards.append(a["reward"][li])
        q0 += len(a["problem_index"])
        lengths.extend(s.response_lengths())
    return queries, paths, rewards, lengths


def test_advantages_are_batch_wide():
    """The learners' advantages are TreePO's over every leaf of the step (the package's own
    estimator on the shards' arrays), not each shard's own: whitening one shard alone gives
    other values."""
    w = dist.RolloutWorker(CONFIG)
    shards = [w.sample(0, 0, 4), w.sample(0, 4, 4)]
    learner = dist.Learner(CONFIG, rank=1, world=2)
    adv, mbs = learner.prepare(0, shards)
    assert mbs == 2
    want = treepo.advantages.compute(*leaf_records(shards), estimator="treepo")
    assert np.array_equal(adv, want)
    assert np.count_nonzero(adv) > len(adv) // 2
    alone = treepo.advantages.compute(*leaf_records(shards[:1]), estimator="treepo")
    assert not np.allclose(alone, adv[: len(alone)])


def test_worker_counts_change_rounding_only(cluster):
    one = dist.run_local(CONFIG, 1, 1, return_trace=True, evaluate=False, log=quiet)
    two = dist.run_local(CONFIG, 2, 2, return_trace=True, evaluate=False, log=quiet)
    for x, y in zip(one.trace, two.trace):
        # Slices of a batch draw the whole batch's trees: the same leaves, the same advantages.
        assert np.array_equal(x["advantages"], y["advantages"])
    err = np.abs(one.weights - two.weights)
    bound = 1e-6 + 1e-5 * np.abs(one.weights)
    assert np.all(err <= bound), f"max |diff| {err.max():.3e}"


def test_killed_rollout_worker_is_survived(cluster):
    ref = dist.run_local(CONFIG, 2, 2, return_trace=True, evaluate=False, log=quiet)
    logs = []
    # Rollout worker 1 dies at its second sample call (step 2), mid-step.
    got = dist.run(CONFIG, 2, 2, return_trace=True, evaluate=False, log=logs.append,
                   _fault={1: 2})
    assert got.restarts == 1
    assert any("rollout worker 1 died" in m and "re-issued" in m for m in logs), logs
    assert_same(got, ref)


def test_stale_shard_is_refused():
    w = dist.RolloutWorker(CONFIG)
    learner = dist.Learner(CONFIG)
    shard = w.sample(0, 0, 8)
    assert shard.policy_version == 0
    learner.set_weights(learner.get_weights(), 3)
    with pytest.raises(dist.StalePolicyError, match="version 3"):
        dist.check_versions([shard], learner.version())
    # The learner itself refuses it too.
    with pytest.raises(ValueError, match="off-policy"):
        learner.prepare(0, [shard])


def test_shard_arrays():
    shard = dist.RolloutWorker(CONFIG).sample(1, 2, 3)
    a = shard.arrays
    assert set(a) == set(dist.DTYPES)
    assert all(a[k].dtype == dist.DTYPES[k] for k in a)
    assert (shard.first, shard.count, len(a["problem_index"])) == (2, 3, 3)
    assert a["node_ptr"][0] == 0 and a["node_ptr"][-1] == len(a["parent"])
    assert a["token_ptr"][-1] == len(a["tokens"]) == len(a["logprobs"])
    assert len(a["leaf_ptr"]) == 4 and a["leaf_ptr"][-1] == len(a["reward"]) > 0
    assert np.all(a["finish"] < len(dist.FINISH_REASONS))
    lengths = shard.response_lengths()
    assert np.all(lengths > 0) and np.all(lengths <= 12)


def test_bad_input_is_a_typed_error(tmp_path):
    with pytest.raises(ValueError, match="rollout_workers"):
        dist.run_local(CONFIG, 0, 1, log=quiet)
    with pytest.raises(FileNotFoundError):
        dist.run_local(str(tmp_path / "missing.toml"), log=quiet)
    with pytest.raises(ValueError, match="edge-level"):
        dist.run_local(CONFIG.replace("[rl]\n", "[rl]\nalgo = \"treegrpo\"\n"), log=quiet)
    with pytest.raises(ValueError, match="dynamic sampling"):
        dist.run_local(CONFIG, overrides=["rl.dynamic_sampling_rounds=1"], log=quiet)
    w = dist.RolloutWorker(CONFIG)
    with pytest.raises(ValueError, match="queries 6..10 of a step of 8"):
        w.sample(0, 6, 4)
    with pytest.raises(ValueError, match="parameters"):
        w.set_weights(np.zeros(5, np.float32), 1)
    with pytest.raises(ValueError, match="rank 2 of 2"):
        dist.Learner(CONFIG, rank=2, world=2)
    learner = dist.Learner(CONFIG)
    with pytest.raises(RuntimeError, match="before prepare"):
        learner.gradient(0)
    with pytest.raises(ValueError, match="queries"):
        learner.prepare(0, [w.sample(0, 0, 4)])
    with pytest.raises(ValueError, match="model.heads"):
        treepo._treepo.RunWorker(CONFIG, ["model.heads=3"])


def test_kl_penalty_has_its_reference():
    """With a KL penalty every learner holds the RL start's weights as the reference (after
    SFT on rank 0 and the broadcast), so ranks agree and the step runs."""
    kw = dict(overrides=["rl.loss.kl_coef=0.05"], steps=1, evaluate=False, log=quiet,
              return_trace=True)
    a = dist.run_local(CONFIG, 1, 2, **kw)
    b = dist.run_local(CONFIG, 1, 1, **kw)
    assert len(a.steps) == 1 and np.all(np.isfinite(a.weights))
    assert np.allclose(a.weights, b.weights, rtol=1e-5, atol=1e-6)


def test_cli_local(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    out = subprocess.run(
        [sys.executable, "-m", "treepo.distributed", "--config", str(cfg), "--local",
         "--rollout-workers", "2", "--learners", "2", "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "step 2/2" in out.stdout and "done in" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "treepo.distributed", "--config",
                          str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr
