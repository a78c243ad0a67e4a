"""The driver of a distributed run: SFT on rank 0, then per RL step — shard the step's queries
across the rollout workers, check every shard's policy version, run the learners' update,
publish the new weights — and evaluation before and after RL. The same loop runs on Ray
(:class:`_RayExec`) and in one process (:class:`_LocalExec`, the reference)."""

import os
import time
from pathlib import Path

import numpy as np

from ._shard import check_versions, split
from ._workers import Learner, RolloutWorker, reduce_in_rank_order


def load_config(config):
    """``config`` as TOML text: a path to a file, or the text itself (anything with a line
    break)."""
    if isinstance(config, Path) or "\n" not in str(config):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config {path}: no such file")
        return path.read_text()
    return str(config)


class RunResult:
    """What a run did: ``steps`` (one metrics dict per RL step), ``eval_before`` /
    ``eval_after`` (avg@k, pass@k, maj@k, ...; ``None`` when not evaluated), ``weights`` (the
    final parameters, float32), ``trace`` (per step ``{"advantages", "grads"}`` when asked
    for), ``restarts`` (rollout workers restarted), ``seconds``."""

    def __init__(self):
        self.steps, self.trace = [], []
        self.eval_before = self.eval_after = None
        self.weights = None
        self.restarts = 0
        self.seconds = 0.0
        self.sft_losses = []


class _LocalExec:
    """Every worker in this process; the ranks' all-gather is emulated by collecting each
    rank's gradient here and reducing them with the same function."""

    def __init__(self, text, overrides, device, rollout_workers, learners, log):
        self.rollouts = [RolloutWorker(text, overrides, device) for _ in range(rollout_workers)]
        self.learners = [Learner(text, overrides, device, r, learners) for r in range(learners)]
        self.restarts = 0

    def sft(self):
        return self.learners[0].sft()

    def weights(self):
        return self.learners[0].get_weights()

    def version(self):
        return self.learners[0].version()

    def evaluate(self):
        return self.learners[0].evaluate()

    def publish(self, weights, version, learners=False):
        for w in self.rollouts:
            w.set_weights(weights, version)
        if learners:
            for l in self.learners[1:]:
                l.set_weights(weights, version, reset_optimizer=True)

    def sample(self, step, slices, weights, version):
        return [self.rollouts[i % len(self.rollouts)].sample(step, f, c)
                for i, (f, c) in enumerate(slices)]

    def update(self, step, shards, return_grads):
        preps = [l.prepare(step, shards) for l in self.learners]
        outs = [{"advantages": a, "stats": [], "reports": [], "grads": []} for a, _ in preps]
        for mb in range(preps[0][1]):
            gs = [l.gradient(mb) for l in self.learners]
            total = reduce_in_rank_order([g for g, _ in gs])
            for l, (_, stats), out in zip(self.learners, gs, outs):
                out["reports"].append(l.apply(total))
                out["stats"].append(stats)
                if return_grads:
                    out["grads"].append(total)
        return outs

    def close(self):
        pass


class _RayExec:
    """Rollout workers and learners as Ray actors; the learners' gradients are all-gathered
    through ``torch.distributed``. A rollout worker that dies is replaced, sent the current
    weights, and its queries re-issued."""

    def __init__(self, text, overrides, device, rollout_workers, learners, log, *, address,
                 backend, threads, fault, max_restarts, actor_options):
        try:
            import ray
        except ImportError as e:
            raise RuntimeError(
                "treepo.distributed.run needs Ray (pip install ray); run_local (--local) runs "
                "the same computation without it") from e

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                kw["num_cpus"] = os.cpu_count()
            ray.init(address=address, **kw)
            self.started = True
        self.log = log
        self.args = (text, list(overrides), device)
        env = {"env_vars": {"RAYON_NUM_THREADS": str(threads)}}
        self.options = dict(actor_options or {}, runtime_env=env)
        self.fault = dict(fault or {})
        self.max_restarts = max_restarts
        self.restarts = 0
        self._rollout_cls = ray.remote(RolloutWorker)
        self.rollouts = [self._new_rollout(i) for i in range(rollout_workers)]
        cls = ray.remote(Learner)
        self.learners = [cls.options(**self.options).remote(*self.args, r, learners)
                         for r in range(learners)]
        if learners > 1:
            host, port = ray.get(self.learners[0].address.remote())
            if backend is None:
                backend = "nccl" if device.startswith("cuda") else "gloo"
            ray.get([l.init_group.remote(host, port, backend) for l in self.learners])

    def _new_rollout(self, i):
        die = self.fault.pop(i, None)
        return self._rollout_cls.options(**self.options).remote(*self.args, die_on_call=die)

    def _get(self, refs):
        return self.ray.get(refs)

    def sft(self):
        return self._get(self.learners[0].sft.remote())

    def weights(self):
        return self._get(self.learners[0].get_weights.remote())

    def version(self):
        return self._get(self.learners[0].version.remote())

    def evaluate(self):
        return self._get(self.learners[0].evaluate.remote())

    def publish(self, weights, version, learners=False):
        ref = self.ray.put(weights)
        calls = [w.set_weights.remote(ref, version) for w in self.rollouts]
        if learners:
            calls += [l.set_weights.remote(ref, version, True) for l in self.learners[1:]]
        self._get(calls)
        self._weights = (ref, version)

    def sample(self, step, slices, weights, version):
        ray = self.ray
        owner = {i: i % len(self.rollouts) for i in range(len(slices))}
        pending = {i: self.rollouts[owner[i]].sample.remote(step, f, c)
                   for i, (f, c) in enumerate(slices)}
        done = {}
        while pending:
            for i, ref in list(pending.items()):
                try:
                    done[i] = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    w = owner[i]
                    self.restarts += 1
                    if self.restarts > self.max_restarts:
                        raise RuntimeError(
                            f"rollout worker {w} died and the run has used its "
                            f"{self.max_restarts} restarts") from e
                    f, c = slices[i]
                    self.log(f"rollout worker {w} died ({type(e).__name__}); restarted, its "
                             f"queries {f}..{f + c} of step {step} re-issued")
                    ray.kill(self.rollouts[w], no_restart=True)
                    self.rollouts[w] = self._new_rollout(w)
                    ray.get(self.rollouts[w].set_weights.remote(self._weights[0], version))
                    # Every slice that worker owned and has not returned is re-issued.
                    for j in pending:
                        if owner[j] == w:
                            fj, cj = slices[j]
                            pending[j] = self.rollouts[w].sample.remote(step, fj, cj)
                    break
                del pending[i]
        return [done[i] for i in range(len(slices))]

    def update(self, step, shards, return_grads):
        ref = self.ray.put(shards)
        return self._get([l.update.remote(step, ref, return_grads) for l in self.learners])

    def close(self):
        ray = self.ray
        try:
            ray.get([l.close.remote() for l in self.learners])
        except Exception:  # noqa: BLE001 - the actors go below either way
            pass
        for a in self.rollouts + self.learners:
            ray.kill(a, no_restart=True)
        if self.started:
            ray.shutdown()


def _metrics(step, shards, outs, t_sample, t_update):
    rewards = np.concatenate([s.arrays["task_reward"] for s in shards])
    correct = np.concatenate([s.arrays["correct"] for s in shards])
    lengths = np.concatenate([s.response_lengths() for s in shards])
    mbs = len(outs[0]["stats"])
    merged = {k: sum(o["stats"][mb][k] for o in outs for mb in range(mbs))
              for k in ("pg_loss", "num_tokens", "clipped_low", "clipped_high", "dual_clipped",
                        "old_minus_new_logp", "entropy_sum")}
    ntok = max(1, merged["num_tokens"])
    reports = outs[0]["reports"]
    adv = outs[0]["advantages"]
    return {
        "step": step + 1,
        "reward": float(rewards.mean()) if len(rewards) else 0.0,
        "acc": float(correct.mean()) if len(correct) else 0.0,
        "response_len": float(lengths.mean()) if len(lengths) else 0.0,
        "leaves": int(len(rewards)),
        "tokens_decoded": int(sum(s.tokens_decoded for s in shards)),
        "adv_mean": float(adv.mean()) if len(adv) else 0.0,
        "adv_std": float(adv.std()) if len(adv) else 0.0,
        "pg_loss": merged["pg_loss"] / max(1, mbs),
        "clip_frac": (merged["clipped_low"] + merged["clipped_high"] + merged["dual_clipped"])
        / ntok,
        "ppo_kl": merged["old_minus_new_logp"] / ntok,
        "entropy": merged["entropy_sum"] / ntok,
        "grad_norm": float(np.mean([r["grad_norm"] for r in reports])) if reports else 0.0,
        "lr": reports[-1]["lr"] if reports else 0.0,
        "time_sample": t_sample,
        "time_update": t_update,
    }


def _check_agreement(outs):
    """Every rank computed the same advantages and took the same optimizer steps."""
    for r, o in enumerate(outs[1:], 1):
        if not np.array_equal(o["advantages"], outs[0]["advantages"]):
            raise RuntimeError(f"learner {r} computed other advantages than learner 0")
        if [x["grad_norm"] for x in o["reports"]] != [x["grad_norm"] for x in outs[0]["reports"]]:
            raise RuntimeError(f"learner {r} applied another gradient than learner 0")


def drive(ex, queries_per_step, steps, *, sft, evaluate, return_trace, log, rollout_workers):
    """The run's loop on an executor (see the module doc)."""
    t0 = time.perf_counter()
    res = RunResult()
    if sft:
        res.sft_losses = list(ex.sft())
        log(f"sft: {len(res.sft_losses)} steps, loss {res.sft_losses[0]:.4f} -> "
            f"{res.sft_losses[-1]:.4f}" if res.sft_losses else "sft: 0 steps")
    version = ex.version()
    weights = ex.weights()
    ex.publish(weights, version, learners=True)
    if evaluate:
        res.eval_before = ex.evaluate()
        log(f"before RL: avg@{res.eval_before['k']} {res.eval_before['avg_at_k']:.3f}")
    slices = split(queries_per_step, rollout_workers)
    for step in range(steps):
        t1 = time.perf_counter()
        shards = ex.sample(step, slices, weights, version)
        check_versions(shards, version)
        t2 = time.perf_counter()
        outs = ex.update(step, shards, return_trace)
        _check_agreement(outs)
        version = ex.version()
        weights = ex.weights()
        ex.publish(weights, version)
        t3 = time.perf_counter()
        m = _metrics(step, shards, outs, t2 - t1, t3 - t2)
        res.steps.append(m)
        if return_trace:
            res.trace.append({"advantages": outs[0]["advantages"], "grads": outs[0]["grads"]})
        log(f"step {m['step']}/{steps}: reward {m['reward']:+.3f} acc {m['acc']:.3f} "
            f"len {m['response_len']:.1f} grad norm {m['grad_norm']:.3f} | sample "
            f"{m['time_sample']:.2f} s, update {m['time_update']:.2f} s")
    if evaluate:
        res.eval_after = ex.evaluate()
        log(f"after RL: avg@{res.eval_after['k']} {res.eval_after['avg_at_k']:.3f}")
    res.weights = np.array(weights, copy=True)
    res.restarts = ex.restarts
    res.seconds = time.perf_counter() - t0
    return res


def _plan(config, overrides, steps):
    """The config text, the overrides every worker gets, queries per step and RL steps. A
    relative ``model.path`` is made absolute here: actors may run in another directory."""
    from .. import _treepo

    text = load_config(config)
    overrides = list(overrides)
    probe = _treepo.RunWorker(text, overrides, "cpu")
    if probe.model_path is not None and not os.path.isabs(probe.model_path):
        overrides.append(f"model.path={os.path.abspath(probe.model_path)}")
    if probe.algo in ("treegrpo", "treerl", "spo-tree"):
        raise ValueError(
            f"rl.algo = {probe.algo}: edge-level estimators are not supported by "
            f"treepo.distributed yet; use a leaf-level algorithm (treepo, grpo, ...)")
    if probe.dynamic_sampling_rounds >= 0:
        raise ValueError(
            f"rl.dynamic_sampling_rounds = {probe.dynamic_sampling_rounds}: dynamic sampling is "
            f"not supported by treepo.distributed yet (every step trains on its "
            f"rl.queries_per_step queries); set it to -1")
    return text, overrides, probe.queries_per_step, probe.rl_steps if steps is None else steps


def _check_counts(rollout_workers, learners):
    for name, v in (("rollout_workers", rollout_workers), ("learners", learners)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} = {v!r}: need an integer >= 1")


def run(config, rollout_workers=1, learners=1, *, overrides=(), steps=None, device="cpu",
        sft=True, evaluate=True, address=None, backend=None, threads=None,
        return_trace=False, max_restarts=8, actor_options=None, log=print, _fault=None):
    """Runs the RL phase of ``config`` (a TOML path or text, with ``overrides`` as
    ``section.key=value``) on Ray: ``rollout_workers`` rollout actors and ``learners``
    data-parallel learner actors, each owning one engine / trainer on ``device``.

    * ``address``: the Ray cluster (``None`` starts a local one, shut down at the end; a
      cluster the caller started is left running);
    * ``steps``: RL steps (default ``rl.steps``); ``sft``: run the config's ``[sft]`` phase
      first (on learner 0; its weights are then sent to every worker); ``evaluate``: eval
      before and after RL;
    * ``backend``: ``torch.distributed`` backend (default gloo on CPU, NCCL on CUDA);
      ``threads``: rayon threads per actor (default: the CPUs shared by the larger role);
    * ``max_restarts``: rollout-worker deaths survived in the run; ``actor_options``: extra
      ``ray.remote`` options (``num_cpus``, ``num_gpus``, ...) of every actor;
    * ``_fault``: test hook ``{rollout worker: sample call it dies at}``.

    Returns a :class:`RunResult`. With the same config, seed and worker counts the result is
    exactly :func:`run_local`'s.
    """
    _check_counts(rollout_workers, learners)
    text, overrides, q, steps = _plan(config, overrides, steps)
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(rollout_workers, learners))
    ex = _RayExec(text, overrides, device, rollout_workers, learners, log, address=address,
                  backend=backend, threads=threads, fault=_fault, max_restarts=max_restarts,
                  actor_options=actor_options)
    try:
        return drive(ex, q, steps, sft=sft, evaluate=evaluate, return_trace=return_trace,
                     log=log, rollout_workers=rollout_workers)
    finally:
        ex.close()


def run_local(config, rollout_workers=1, learners=1, *, overrides=(), steps=None,
              device="cpu", sft=True, evaluate=True, return_trace=False, log=print):
    """:func:`run` in this process, without Ray: the same shards, the same ranks and the same
    rank-ordered gradient sums — the single-process reference a distributed run equals."""
    _check_counts(rollout_workers, learners)
    text, overrides, q, steps = _plan(config, overrides, steps)
    ex = _LocalExec(text, overrides, device, rollout_workers, learners, log)
    return drive(ex, q, steps, sft=sft, evaluate=evaluate, return_trace=return_trace, log=log,
                 rollout_workers=rollout_workers)
