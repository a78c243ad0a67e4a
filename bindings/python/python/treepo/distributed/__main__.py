"""``python -m treepo.distributed --config configs/demo.toml --rollout-workers 2 --learners 2``:
a ``treepo train`` config's SFT and RL phases with rollouts and updates on Ray (a local cluster
is started, and stopped at the end, unless ``--address`` names one). ``--local`` runs the same
computation in this process without Ray (the reference)."""

import argparse
import json
import sys

from ._driver import run, run_local


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m treepo.distributed", description=__doc__)
    p.add_argument("--config", required=True, help="a treepo train config (TOML)")
    p.add_argument("--rollout-workers", type=int, default=2, help="rollout actors (default 2)")
    p.add_argument("--learners", type=int, default=2, help="data-parallel learners (default 2)")
    p.add_argument("--steps", type=int, default=None, help="RL steps (default rl.steps)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N for every worker")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--no-sft", action="store_true", help="skip the config's [sft] phase")
    p.add_argument("--local", action="store_true", help="one process, no Ray (the reference)")
    p.add_argument("--json", default=None, help="write the steps and evals to this file")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    a = p.parse_args(argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    kw = dict(overrides=a.overrides, steps=a.steps, device=a.device, sft=not a.no_sft, log=log)
    try:
        if a.local:
            res = run_local(a.config, a.rollout_workers, a.learners, **kw)
        else:
            res = run(a.config, a.rollout_workers, a.learners, address=a.address, **kw)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b, f = res.eval_before, res.eval_after
    print(f"done in {res.seconds:.1f} s: avg@{f['k']} {b['avg_at_k']:.3f} -> {f['avg_at_k']:.3f}"
          f" (pass@{f['k']} {f['pass_at_k']:.3f}), {res.restarts} rollout worker restarts")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"steps": res.steps, "eval_before": b, "eval_after": f,
                       "restarts": res.restarts, "seconds": res.seconds}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
