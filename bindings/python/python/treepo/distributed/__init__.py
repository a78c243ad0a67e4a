"""TreePO rollouts and training past one machine, on Ray (docs/distributed.md).

``run(config, rollout_workers=N, learners=M)`` runs a ``treepo train`` config's RL phase with
N rollout actors (prompts sharded across them; trees come back as flat arrays,
:class:`Shard`) and M data-parallel learners (advantages over the whole batch, gradients
all-gathered through ``torch.distributed`` and summed in rank order, new weights published to
the rollout actors through the object store after every step, each shard's policy version
checked). :func:`run_local` is the same computation in one process, the reference a
distributed run equals exactly. ``python -m treepo.distributed --help`` is the command line.
"""

from ._driver import RunResult, load_config, run, run_local
from ._shard import DTYPES, FINISH_REASONS, Shard, StalePolicyError, check_versions, split
from ._workers import Learner, RolloutWorker, reduce_in_rank_order

__all__ = [
    "DTYPES",
    "FINISH_REASONS",
    "Learner",
    "RolloutWorker",
    "RunResult",
    "Shard",
    "StalePolicyError",
    "check_versions",
    "load_config",
    "reduce_in_rank_order",
    "run",
    "run_local",
    "split",
]
