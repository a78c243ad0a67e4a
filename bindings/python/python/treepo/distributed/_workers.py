"""The two worker roles of a distributed run, as plain classes (``treepo.distributed`` makes
Ray actors of them; the single-process reference uses them directly).

* :class:`RolloutWorker` samples slices of RL steps with the weights it was last sent.
* :class:`Learner` is one data-parallel rank: it prepares its share of a step's update from the
  whole step's shards, computes its gradient of each mini-batch, all-gathers the ranks'
  gradients through ``torch.distributed`` (gloo on CPU, NCCL on GPU), sums them in rank order
  (:func:`reduce_in_rank_order`) and applies the sum, so every rank keeps the same weights.
"""

import os

import numpy as np

from .. import _treepo
from ._shard import Shard


def reduce_in_rank_order(grads):
    """``grads[0] + grads[1] + ...`` in float32, added in rank order: every rank and the
    single-process reference reduce this way, so they agree bit for bit."""
    total = np.array(grads[0], dtype=np.float32, copy=True)
    for g in grads[1:]:
        if g.shape != total.shape:
            raise ValueError(f"gradients of {g.shape} and {total.shape} values")
        total += g
    return total


def _f32(x):
    return np.frombuffer(x, dtype=np.float32) if isinstance(x, bytes) else np.asarray(x)


class RolloutWorker:
    """Samples slices of RL steps (see the module doc). ``die_on_call``: a test hook — the
    process exits (as a crashed worker would) at that ``sample`` call (1-based)."""

    def __init__(self, config, overrides=(), device="cpu", die_on_call=None):
        self._w = _treepo.RunWorker(config, list(overrides), device)
        self._calls = 0
        self._die_on_call = die_on_call

    def pid(self):
        return os.getpid()

    def version(self):
        return self._w.version

    def set_weights(self, weights, version):
        self._w.set_weights(np.ascontiguousarray(weights, dtype=np.float32).tobytes(), version)

    def sample(self, step, first, count):
        """Queries ``first..first+count`` of step ``step``'s batch, as a :class:`Shard`."""
        self._calls += 1
        if self._die_on_call is not None and self._calls >= self._die_on_call:
            os._exit(17)
        return Shard.from_native(self._w.sample(step, first, count), first, count)


class Learner:
    """Data-parallel rank ``rank`` of ``world`` (see the module doc)."""

    def __init__(self, config, overrides=(), device="cpu", rank=0, world=1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world}: need 0 <= rank < world")
        self._w = _treepo.RunWorker(config, list(overrides), device)
        self.rank, self.world = rank, world
        self._group = False

    # -- the collective ---------------------------------------------------------------------

    def address(self):
        """``(host, free port)`` for the process group's rendezvous (asked of rank 0)."""
        import socket

        host = "127.0.0.1"
        try:
            import ray

            if ray.is_initialized():
                host = ray.util.get_node_ip_address()
        except ImportError:
            pass
        with socket.socket() as s:
            s.bind((host, 0))
            return host, s.getsockname()[1]

    def init_group(self, host, port, backend="gloo"):
        """Joins the ranks' ``torch.distributed`` process group (every rank at once)."""
        if self.world == 1:
            return
        try:
            import torch.distributed as dist
        except ImportError as e:
            raise RuntimeError(
                "learners > 1 all-gather their gradients through torch.distributed: pip "
                "install torch") from e
        dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=self.rank,
                                world_size=self.world)
        self._group = True

    def close(self):
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False

    def _all_gather(self, grad):
        if self.world == 1:
            return [grad]
        if not self._group:
            raise RuntimeError("learner: init_group was not called")
        import torch
        import torch.distributed as dist

        t = torch.from_numpy(np.array(grad, dtype=np.float32, copy=True))
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t)
        return [o.numpy() for o in out]

    # -- weights ----------------------------------------------------------------------------

    def version(self):
        return self._w.version

    def get_weights(self):
        return np.frombuffer(self._w.get_weights(), dtype=np.float32)

    def set_weights(self, weights, version, reset_optimizer=False):
        self._w.set_weights(np.ascontiguousarray(weights, dtype=np.float32).tobytes(), version,
                            reset_optimizer)

    def sft(self):
        """The config's ``[sft]`` phase on this rank's model; returns the losses."""
        return self._w.sft()

    def evaluate(self):
        return self._w.evaluate()

    # -- the update -------------------------------------------------------------------------

    def prepare(self, step, shards):
        """This rank's share of step ``step`` from the whole step's shards (batch order):
        ``(advantages of every leaf, mini-batches)``."""
        adv, mbs = self._w.prepare(step, [s.native() for s in shards], self.rank, self.world)
        return np.frombuffer(adv, dtype=np.float64), mbs

    def gradient(self, mb):
        g, stats = self._w.gradient(mb)
        return _f32(g), stats

    def apply(self, grad):
        return self._w.apply(np.ascontiguousarray(grad, dtype=np.float32).tobytes())

    def update(self, step, shards, return_grads=False):
        """The whole update of step ``step`` on this rank, the ranks' gradients all-gathered
        per mini-batch. Returns ``{"advantages", "stats": [per mini-batch], "reports": [...],
        "grads": [...] (with return_grads)}``."""
        adv, mbs = self.prepare(step, shards)
        out = {"advantages": adv, "stats": [], "reports": [], "grads": []}
        for mb in range(mbs):
            g, stats = self.gradient(mb)
            total = reduce_in_rank_order(self._all_gather(g))
            out["reports"].append(self.apply(total))
            out["stats"].append(stats)
            if return_grads:
                out["grads"].append(total)
        return out
