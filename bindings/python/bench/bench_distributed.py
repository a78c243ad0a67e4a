"""RL steps/s of treepo.distributed on a local Ray cluster with 1 and 2 rollout actors (and as
many learners), against the single-process reference on the same config, in one run.

The run is the demo config's RL phase (configs/demo.toml: 16 queries per step, trees of width
8, 2 mini-batches) from the config's fresh model (no SFT: the speed, not the learning, is
measured; a fresh model's responses are as long as the sampler allows). On a 2-core machine
the actors share the cores, so ~1x is expected: the point of the layout is correctness here and
scale on a cluster (docs/distributed.md).

Run: python bindings/python/bench/bench_distributed.py [--steps N] [--config PATH]
"""

import argparse
import os
import time

import ray

from treepo import distributed as dist


def quiet(_msg):
    pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--config", default="configs/demo.toml")
    a = p.parse_args()
    load = os.getloadavg()[0]
    print(f"LOAD 1-min {load:.2f} on {os.cpu_count()} CPUs"
          + ("  WARNING: machine busy, ratios unreliable" if load > 1.5 else ""))
    kw = dict(steps=a.steps, sft=False, evaluate=False, log=quiet)
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s")
    rows = []
    try:
        for label, fn in [
            ("single process (run_local 1x1)", lambda: dist.run_local(a.config, 1, 1, **kw)),
            ("ray, 1 rollout actor, 1 learner", lambda: dist.run(a.config, 1, 1, **kw)),
            ("ray, 2 rollout actors, 2 learners", lambda: dist.run(a.config, 2, 2, **kw)),
        ]:
            res = fn()
            loop = sum(m["time_sample"] + m["time_update"] for m in res.steps)
            sample = sum(m["time_sample"] for m in res.steps)
            rows.append((label, a.steps / loop, sample / a.steps, res.seconds))
            print(f"{label:36s} {a.steps / loop:6.2f} steps/s  (sample {sample / a.steps:.3f} "
                  f"s/step; whole run incl. actor start {res.seconds:.1f} s)")
    finally:
        ray.shutdown()
    base = rows[1][1]
    print(f"RATIO 2 vs 1 rollout actors: {rows[2][1] / base:.2f}x steps/s; ray 1x1 vs single "
          f"process: {base / rows[0][1]:.2f}x")
    print(f"LOAD after: 1-min {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
