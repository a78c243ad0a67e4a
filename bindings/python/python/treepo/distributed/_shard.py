"""Rollout shards as numpy arrays: the flat layout a rollout worker returns for its slice of an
RL step (docs/distributed.md, "Rollout shards"), and the checks the driver runs on them."""

import numpy as np

#: Every array of a shard and its dtype.
DTYPES = {
    "problem_index": np.uint64,
    "node_ptr": np.uint64,
    "parent": np.int64,
    "token_ptr": np.uint64,
    "tokens": np.uint32,
    "logprobs": np.float32,
    "leaf_ptr": np.uint64,
    "leaf_node": np.uint64,
    "reward": np.float64,
    "task_reward": np.float64,
    "correct": np.uint8,
    "well_formed": np.uint8,
    "finish": np.uint8,
}

#: The finish reasons in the order of their ``finish`` codes.
FINISH_REASONS = ("finished", "eos", "max_tokens", "max_depth", "repetition", "kv_exhausted")


class StalePolicyError(RuntimeError):
    """A rollout shard was sampled by other weights than the ones about to be trained."""


class Shard:
    """One rollout worker's slice of a step: ``arrays`` (name -> numpy array, see
    :data:`DTYPES`), the ``policy_version`` that sampled it, the queries ``first..first+count``
    of the step's batch it holds, and the tokens the engine decoded."""

    __slots__ = ("arrays", "policy_version", "first", "count", "tokens_decoded")

    def __init__(self, arrays, policy_version, first, count, tokens_decoded):
        self.arrays = arrays
        self.policy_version = int(policy_version)
        self.first = int(first)
        self.count = int(count)
        self.tokens_decoded = int(tokens_decoded)

    @classmethod
    def from_native(cls, native, first, count):
        """From ``RunWorker.sample``'s ``(bytes dict, version, tokens_decoded)``."""
        raw, version, decoded = native
        arrays = {k: np.frombuffer(raw[k], dtype=t) for k, t in DTYPES.items()}
        return cls(arrays, version, first, count, decoded)

    def native(self):
        """``(bytes dict, version)``, what ``RunWorker.prepare`` takes."""
        raw = {k: np.ascontiguousarray(self.arrays[k], dtype=t).tobytes()
               for k, t in DTYPES.items()}
        return raw, self.policy_version

    @property
    def num_leaves(self):
        return len(self.arrays["reward"])

    def response_lengths(self):
        """Tokens of each leaf's response (its path's segments, the prompt excluded)."""
        a = self.arrays
        node_ptr, parent, token_ptr = a["node_ptr"], a["parent"], a["token_ptr"]
        seg = np.diff(token_ptr.astype(np.int64))
        out = np.zeros(self.num_leaves, dtype=np.int64)
        leaf_ptr = a["leaf_ptr"]
        for q in range(len(a["problem_index"])):
            base = int(node_ptr[q])
            for li in range(int(leaf_ptr[q]), int(leaf_ptr[q + 1])):
                n = int(a["leaf_node"][li])
                while parent[base + n] >= 0:
                    out[li] += seg[base + n]
                    n = int(parent[base + n])
        return out


def check_versions(shards, version):
    """Raises :class:`StalePolicyError` unless every shard was sampled at ``version``."""
    stale = [(s.first, s.policy_version) for s in shards if s.policy_version != version]
    if stale:
        detail = ", ".join(f"queries from {f} at version {v}" for f, v in stale)
        raise StalePolicyError(
            f"rollouts sampled by another policy than version {version} (the learners' "
            f"weights): {detail}; refusing to train on them"
        )


def split(n, parts):
    """``[0, n)`` as ``parts`` contiguous ``(first, count)`` slices of ``ceil(n/parts)`` (empty
    ones dropped) — the same split as the learners' ranks use inside each mini-batch."""
    per = max(1, -(-n // max(1, parts)))
    return [(a, min(per, n - a)) for a in range(0, n, per)]
