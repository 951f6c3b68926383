"""A neighbour on the machine: `lth fit` alone, and two at once, under each OpenMP waiting policy.

torch's CPU threads come from OpenMP. A thread that finishes its share of an operation waits for
the next one, by default spinning (GNU OpenMP: 300000 turns) before it sleeps. Alone, that saves a
wake-up per operation; beside another torch process on a few cores, the spinning threads take the
cores the other process's threads need, and both crawl. `lth` sets ``GOMP_SPINCOUNT=1000`` unless
the user set ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` (their setting wins).

Each variant runs the quick config without controls on real Fashion-MNIST (``../shared/data``), 2 rounds of
``--steps`` steps, once alone and then twice at once (seeds 0 and 1: two runs of one experiment,
each in its own folder). The figure is the training time per step, from each run's
``results.csv`` (``seconds``: fit and test of a round, over its ``steps``), so Python's and
Lightning's start-up is not counted. Nothing else may run on the machine meanwhile.

    python benchmarks/neighbour.py                # the table
    python benchmarks/neighbour.py --steps 5      # a smoke test
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS")
VARIANTS = {
    "spin 300000 (GNU OpenMP's own default)": {"GOMP_SPINCOUNT": "300000"},
    "lth's default (GOMP_SPINCOUNT=1000)": {},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def _command(out: Path, seed: int, steps: int) -> list[str]:
    lth = Path(sys.executable).with_name("lth")
    return [
        str(lth),
        "fit",
        "-c",
        str(REPO / "configs" / "quick.yaml"),
        "--data.data_dir",
        str(DATA),
        "--trainer.default_root_dir",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.limit_train_batches",
        str(steps),
        "--trainer.limit_test_batches",
        "10",
        "--trainer.val_check_interval",
        "1.0",  # once an epoch of `steps` batches, as measured before the quick config validated every 50
        "--lottery.rounds",
        "2",
        "--lottery.progress",
        "false",
        "--lottery.controls",
        "[]",  # one network: the seed's MLP
        "--seed_everything",
        str(seed),
    ]


def _ms_per_step(out: Path, seed: int) -> float:
    (results,) = out.glob(f"*/seed_{seed}/results.csv")
    with results.open() as fh:
        rows = list(csv.DictReader(fh))
    return 1000 * sum(float(r["seconds"]) for r in rows) / sum(int(r["steps"]) for r in rows)


def _run(env: dict[str, str], seeds: list[int], steps: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        procs = [
            subprocess.Popen(_command(out, s, steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for s in seeds
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=1800)
            if proc.returncode:
                raise RuntimeError(err.decode()[-3000:])
        return [_ms_per_step(out, s) for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per round (default 100)")
    parser.add_argument("--spins", type=int, nargs="*", default=[], help="more GOMP_SPINCOUNT values to try")
    parser.add_argument("--only-spins", action="store_true", help="run only the --spins variants")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in OPENMP}
    variants = {} if args.only_spins else dict(VARIANTS)
    variants.update({f"GOMP_SPINCOUNT={n}": {"GOMP_SPINCOUNT": str(n)} for n in args.spins})
    print(f"{os.cpu_count()} CPU cores; ms per training step (fit and test of a round over its steps)")
    print(f"{'variant':42} {'alone':>8} {'two at once':>14} {'slowdown':>9}")
    for name, settings in variants.items():
        start = time.perf_counter()
        (alone,) = _run({**base, **settings}, [0], args.steps)
        pair = _run({**base, **settings}, [0, 1], args.steps)
        both = sum(pair) / len(pair)
        print(f"{name:42} {alone:8.2f} {both:14.2f} {both / alone:8.1f}x   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
