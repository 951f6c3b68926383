"""Stacked members vs one network at a time: the cost of one member's epoch, and of the main experiment.

1. Per-member epoch cost, through the real Trainer. K members of the seed MLP (784-256-128-32-10,
   batch 128, fused Adam, lr 1e-4, a pruned round: every member at 51% of its weights, masks
   enforced) train as one ``StackedClassifier``. As in ``epoch_speed.py``, the run is cut into
   chunks of 20 steps and the raw single-network loop with fused Adam runs 20 steps of its own
   before each chunk, in the same process; the ratio is the stacked chunk's time over K raw
   chunks' time: what one member costs against one network trained alone in a raw loop. The
   first epoch of every run is a warm-up. The same K members then train with each member on its
   own data order (``MemberBatches``: every step takes K batches, one per order, as seeds of
   different data orders do), beside it: what per-member batches cost.

2. ``--main``: the README's main experiment (``configs/fashion_mnist_mlp.yaml``: 14 rounds, both
   controls, 9 epochs a round) by wall clock, with ``--lottery.stack false`` and ``true``, for 1
   and 3 seeds (``--main-seeds``); ``--main-epochs`` shortens the rounds.

3. ``--device cuda``: the per-step time, steps per second and peak GPU memory of K = 1, 8, 32, 128.

    python benchmarks/stacked_speed.py                          # 1., on this CPU
    python benchmarks/stacked_speed.py --main                   # 1. and 2. (about an hour and a half here)
    python benchmarks/stacked_speed.py --device cuda            # on a GPU
    python benchmarks/stacked_speed.py --members 1 3 --epochs 2 --limit 40 --reps 1   # a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from epoch_speed import (
    RAW_FUSED,
    REPO,
    InterleaveCallback,
    Interleaver,
    RawFloor,
    _peak_mb,
    _reset_peak,
    _trainer,
    checked_device,
    interleaving_arguments,
    load_data,
)

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback
from lth_lightning.callbacks.state import LotteryState
from lth_lightning.pruning.magnitude import prune
from lth_lightning.stack.batches import MemberOrders
from lth_lightning.stack.module import StackedClassifier
from lth_lightning.stack.network import stack_states


def stacked_module(
    members: int, probe: torch.Tensor, own_orders: bool = False
) -> tuple[StackedClassifier, LotteryTicketCallback]:
    """K freshly initialized members of the seed MLP, each pruned to 51% by its own magnitudes (``own_orders``:
    each reading its own batches)."""
    states, masks = [], []
    for k in range(members):
        torch.manual_seed(k)
        template = LotteryClassifier(net=MLP(), lr=1e-4)
        state = {n: v.detach().clone() for n, v in template.state_dict().items()}
        weights = {n: v for n, v in state.items() if n.endswith("weight")}
        ones = {n: torch.ones_like(v, dtype=torch.bool) for n, v in weights.items()}
        masks.append(prune(weights, ones, 0.2, rounds=3))
        states.append(state)
    torch.manual_seed(0)
    names = [f"m{k}" for k in range(members)]
    module = StackedClassifier(LotteryClassifier(net=MLP(), lr=1e-4), states, names, probe, member_batches=own_orders)
    callback = LotteryTicketCallback(verbose=False)
    stacked_masks = stack_states(masks)
    snapshot = {n: v.detach().clone() for n, v in module.state_dict().items()}
    state = LotteryState(
        round=0, phase="pruned", names=list(stacked_masks), masks=stacked_masks, snapshot=snapshot, member_dims=1
    )
    callback.set_state(state)
    return module, callback


def member_cost(
    dm: FashionMNISTDataModule,
    floor: RawFloor,
    members: int,
    epochs: int,
    chunk: int,
    device: torch.device,
    own_orders: bool = False,
):
    """(per-member ratio to the raw fused loop, seconds per stacked step, peak memory MB) of one stacked run;
    ``own_orders``: every member on its own data order (K batches a step)."""
    x, _ = dm.split("train")
    steps_per_epoch = -(-len(x) // 128)
    il = Interleaver(floor, chunk, warmup=steps_per_epoch)
    module, callback = stacked_module(members, x[:8].cpu(), own_orders)
    data = MemberOrders(dm, list(range(members)), list(range(members))) if own_orders else dm
    _reset_peak(device)
    _trainer(device, epochs, [callback, InterleaveCallback(il)]).fit(module, datamodule=data)
    peak = _peak_mb(device)
    stacked = sum(t for _, t in il.chunks)
    raw = sum(r[RAW_FUSED] for r, _ in il.chunks)
    return stacked / (members * raw), stacked / (len(il.chunks) * chunk), peak


def main_experiment(seeds: int, stack: bool, epochs: int | None, data_dir: Path) -> float:
    """Seconds of `lth fit -c configs/fashion_mnist_mlp.yaml` in a fresh folder (a subprocess)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            str(Path(sys.executable).parent / "lth"),
            "fit",
            "-c",
            str(REPO / "configs" / "fashion_mnist_mlp.yaml"),
            "--data.data_dir",
            str(data_dir),
            "--trainer.default_root_dir",
            out,
            "--trainer.enable_progress_bar",
            "false",
            "--lottery.progress",
            "false",
            "--lottery.stack",
            str(stack).lower(),
        ]
        if seeds > 1:
            command += ["--lottery.seeds", str(list(range(seeds)))]
        if epochs is not None:
            command += ["--trainer.max_epochs", str(epochs)]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start


Results = dict[int, list[tuple[float, float, float]]]


def _print_members(members: list[int], results: Results, own: Results) -> None:
    print(
        "\n| members K | per member, x raw loop (fused Adam) | per stacked step | steps/s | x K=1 per step | peak MB "
        "| own data orders: per member, x raw loop | own orders / shared |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = statistics.median(r[1] for r in results[members[0]])
    for k in members:
        ratio = statistics.median(r[0] for r in results[k])
        step = statistics.median(r[1] for r in results[k])
        peak = max(r[2] for r in results[k])
        runs = ", ".join(f"{r[0]:.2f}" for r in results[k])
        cells = [str(k), f"{ratio:.2f} (runs: {runs})", f"{step * 1e3:.2f} ms", f"{1 / step:.0f}", f"{step / base:.2f}"]
        own_ratio = statistics.median(r[0] for r in own[k])
        cells += [f"{peak:.0f}", f"{own_ratio:.2f}", f"{own_ratio / ratio:.2f}"]
        print(f"| {' | '.join(cells)} |", flush=True)


def _print_main(seeds: list[int], epochs: int | None, data_dir: Path) -> None:
    print("\n| main experiment (14 rounds, both controls) | seeds | sequential s | stacked s | speed-up |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    for count in seeds:
        stacked = main_experiment(count, True, epochs, data_dir)
        sequential = main_experiment(count, False, epochs, data_dir)
        speedup = sequential / stacked
        print(
            f"| {epochs or 9} epochs a round | {count} | {sequential:.0f} | {stacked:.0f} | {speedup:.2f}x |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    interleaving_arguments(parser)
    parser.add_argument("--members", type=int, nargs="*", default=None, help="K (default 1 3 9 16; cuda 1 8 32 128)")
    parser.add_argument("--main", action="store_true", help="also time the main experiment, sequential vs stacked")
    parser.add_argument("--main-seeds", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--main-epochs", type=int, default=None, help="epochs a round in --main (default: 9)")
    args = parser.parse_args(argv)
    device = checked_device(parser, args)
    warnings.filterwarnings("ignore")
    members = (
        args.members if args.members is not None else ([1, 8, 32, 128] if device.type == "cuda" else [1, 3, 9, 16])
    )
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    if members:
        dm, source = load_data(args.data_dir, args.limit)
        x, y = dm.split("train")
        floor = RawFloor(x, y, device)
        chunk = max(1, min(args.chunk, -(-len(x) // 128)))
        pl.seed_everything(0, verbose=False)
        results: Results = {k: [] for k in members}
        own: Results = {k: [] for k in members}
        for _ in range(args.reps):
            for k in members:
                results[k].append(member_cost(dm, floor, k, args.epochs, chunk, device))
                own[k].append(member_cost(dm, floor, k, args.epochs, chunk, device, own_orders=True))
        print(f"Data: {source}; device: {name}; torch {torch.__version__}, Lightning {pl.__version__}")
        _print_members(members, results, own)
    if args.main:
        _print_main(args.main_seeds, args.main_epochs, args.data_dir)


if __name__ == "__main__":
    main()
