"""What validating at the paper's interval costs: LeNet-300-100's training with validation every N steps.

One LeNet-300-100 (``configs/mnist_lenet300.yaml``'s network and recipe: Adam 1.2e-3, batch 60) trains
``--steps`` steps through the real Trainer, validating on 5,000 held-out images every 100, 250, 500 and
1,000 steps, and without validation. The runs alternate (``--reps`` times each, in one process, on
MNIST-shaped data), and the table gives each interval's time over the time without validation: the
share of a round that validation takes. Time one thing at a time: nothing else should run on the
cores meanwhile.

    python benchmarks/validation_interval.py                   # about two minutes here
    python benchmarks/validation_interval.py --steps 40 --reps 1 --intervals 20   # a smoke test
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lth_lightning import MLP, LotteryClassifier


def _loaders(train: int, val: int) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(train, 1, 28, 28, generator=generator), torch.randint(0, 10, (train,), generator=generator)
    vx, vy = torch.rand(val, 1, 28, 28, generator=generator), torch.randint(0, 10, (val,), generator=generator)
    return (
        DataLoader(TensorDataset(x, y), batch_size=60, shuffle=True),
        DataLoader(TensorDataset(vx, vy), batch_size=1000),
    )


def _seconds(steps: int, interval: int | None, train: DataLoader, val: DataLoader) -> float:
    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP((784, 300, 100, 10), init="glorot_normal"), lr=1.2e-3)
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=interval or steps,
        check_val_every_n_epoch=None,
        limit_val_batches=0 if interval is None else None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, train, val)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--intervals", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--val", type=int, default=5000, help="held-out images (the recipe's 5,000)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    train, val = _loaders(55_000, args.val)
    times: dict[int | None, list[float]] = {i: [] for i in [None, *args.intervals]}
    _seconds(min(args.steps, 50), None, train, val)  # warm-up
    for _ in range(args.reps):
        for interval in times:
            times[interval].append(_seconds(args.steps, interval, train, val))
    base = statistics.median(times[None])
    print(
        f"LeNet-300-100, {args.steps} steps at batch 60, validation on {args.val} images; {torch.get_num_threads()} "
        f"threads; median of {args.reps}.\n"
    )
    print("| validation | s | x no validation | validation's share of the round |")
    print("| --- | --- | --- | --- |")
    for interval, seconds in times.items():
        median = statistics.median(seconds)
        label = "none" if interval is None else f"every {interval} steps"
        print(f"| {label} | {median:.2f} | {median / base:.2f} | {100 * (median - base) / median:.0f}% |")


if __name__ == "__main__":
    main()
