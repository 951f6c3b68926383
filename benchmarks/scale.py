"""The callback at the sizes projects drop it into: 1M to 300M parameters (1B on a GPU).

The module is a stack of ``nn.Linear(w, w)`` layers with ReLUs (w = 1024 below 50M parameters,
4096 above), trained by ``torch.optim.Adam`` (lr 1e-4) or SGD with momentum 0.9 on random rows
through a real Trainer (no logger, no checkpoint callback, no validation). For each size, one
process at a time (the round boundary, memory and checkpoints with the first of ``--optimizers``):

* ``plain``: two fits of ``--steps`` steps with fresh Trainers, no callback; peak RSS, then the
  bytes of ``trainer.save_checkpoint``. ``gc.collect()`` runs before each fit: a finished fit's
  Trainer (and its optimizer's state, 8 bytes per parameter under Adam) sits in reference cycles
  until Python's cycle collector runs, whose timing otherwise differs from run to run by more
  than everything measured here.
* ``ours``: the same with ``LotteryTicketCallback`` (global, amount 0.2): the second fit is round 1.
  Round boundary = the callback's ``on_fit_end`` of round 0 (pruning) + ``on_fit_start`` of round 1
  (rewind, masks applied). Peak RSS and checkpoint bytes over ``plain``'s, per parameter.
* ``torch``: ``torch.nn.utils.prune.global_unstructured(L1Unstructured, amount=0.2)`` on the same
  initial weights (what Lightning's ``ModelPruning`` calls), timed alone.
* ``steps``: the per-step overhead in steady state, for every optimizer of ``--optimizers`` and
  every density of ``--densities`` (the fraction of the weights a pruned round keeps). One module
  is trained fit by fit in turn from the same masked weights: with the callback (a pruned round at
  that density, rewound and masked at its start, its masks enforced at every step) and without it
  (the raw loop: a plain fit started from the snapshot times the masks), the order swapped every
  repetition (``--reps`` fits of each kind, ``--steps`` steps each); the steps after each fit's
  first, median against median. The same module both ways, because two modules of one
  architecture differ by several percent in step time on this CPU. Beside it: the time spent in
  the callback's own per-step work (its hooks and the re-masking after each optimizer step), and
  how the fit enforced the masks (``weights`` or ``gradients``, as the first fit says).

    python benchmarks/scale.py                                  # 1M, 10M, 100M and 300M on this CPU
    python benchmarks/scale.py --sizes 10M 100M --parts steps   # the per-step table only
    python benchmarks/scale.py --device cuda --sizes 100M 1B    # on a GPU: peak device memory too
    python benchmarks/scale.py --sizes 1M --steps 3 --reps 1    # a smoke test

Peak memory is the process's peak resident set (``VmHWM``) on the CPU, ``max_memory_allocated``
on a GPU, where the boundary's peak is also reported above the training's own peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lth_lightning import LotteryTicketCallback

SIZES = {"1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000, "300M": 300_000_000, "1B": 1_000_000_000}


def shape_for(params: int) -> tuple[int, int]:
    """(layers, width) of a stack with about ``params`` parameters."""
    width = 1024 if params < 50_000_000 else 4096
    return max(1, round(params / (width * width + width))), width


class LinearStack(pl.LightningModule):
    """``layers`` x ``nn.Linear(width, width)`` with ReLUs, regressing random targets, under Adam."""

    def __init__(self, layers: int, width: int, optimizer: str = "adam") -> None:
        super().__init__()
        self.optimizer = optimizer
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(width, width)] + ([nn.ReLU()] if i < layers - 1 else [])
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=1e-4, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=1e-4)


class TimedLottery(LotteryTicketCallback):
    """The callback, with the seconds of its round-boundary hooks and the device memory they peak at."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds: dict[str, float] = {}
        self.boundary_peak: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        key = f"fit_start_{self.phase}"
        with Elapsed(pl_module.device) as elapsed:
            super().on_fit_start(trainer, pl_module)
        self.seconds[key] = elapsed.seconds
        if self.phase == "training" and self.round == 1 and pl_module.device.type == "cuda":
            self.boundary_peak = torch.cuda.max_memory_allocated()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()  # the training's own peak is read before this fit ends
        key = f"fit_end_{self.round}"
        with Elapsed(pl_module.device) as elapsed:
            super().on_fit_end(trainer, pl_module)
        self.seconds[key] = elapsed.seconds


class HookTimes(LotteryTicketCallback):
    """The callback, with the seconds of its per-step work (its hooks, the re-masking after each optimizer step)
    at each step after the first of a fit."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.times: list[float] = []
        self._spent, self._device = 0.0, torch.device("cpu")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._spent, self._device = 0.0, pl_module.device
        super().on_train_batch_start(trainer, pl_module, *args)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        with Elapsed(pl_module.device) as elapsed:
            super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self._spent += elapsed.seconds

    def enforce_masks(self) -> None:
        with Elapsed(self._device) as elapsed:
            super().enforce_masks()
        self._spent += elapsed.seconds

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        with Elapsed(pl_module.device) as elapsed:
            super().on_train_batch_end(trainer, pl_module, *args)
        if args[-1] > 0:
            self.times.append(self._spent + elapsed.seconds)


class StepTimes(pl.Callback):
    """Seconds of every training step after the first of each fit."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        _sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        _sync(pl_module.device)
        if args[-1] > 0:  # batch_idx: the first step of a fit warms up
            self.times.append(time.perf_counter() - self._start)


class TrainingPeak(pl.Callback):
    """The device memory peak of the first fit's training, before the callback's boundary."""

    def __init__(self) -> None:
        self.peak: int | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda" and self.peak is None:
            self.peak = torch.cuda.max_memory_allocated()


class Elapsed:
    """The seconds a ``with`` block took, the device synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, 0.0

    def __enter__(self) -> Elapsed:
        _sync(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        self.seconds = time.perf_counter() - self._start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _loader(width: int, batch: int, steps: int) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch * steps, width, generator=g), torch.randn(batch * steps, width, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def _trainer(device: str, steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator=device,
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


def _module(params: int, device: str, optimizer: str) -> LinearStack:
    torch.manual_seed(0)
    return LinearStack(*shape_for(params), optimizer=optimizer).to(device)


def worker_fits(params: int, device: str, args: argparse.Namespace, with_callback: bool) -> dict[str, Any]:
    """Two fits (rounds 0 and 1 with the callback); peak memory, boundary seconds, checkpoint bytes."""
    model = _module(params, device, args.optimizer)
    data = _loader(shape_for(params)[1], args.batch, args.steps)
    lottery = TimedLottery(verbose=False) if with_callback else None
    peak = TrainingPeak()
    trainer = None
    for _ in range(2):
        gc.collect()
        trainer = _trainer(device, args.steps, [c for c in (lottery, peak) if c is not None])
        trainer.fit(model, data)
    out: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters()), "peak_rss": _peak_rss()}
    if device == "cuda":
        # The callback resets the peak statistics at each fit's end: the process's peak is the largest seen.
        seen = [torch.cuda.max_memory_allocated(), peak.peak, lottery.boundary_peak if lottery else None]
        out["peak_device"] = max(p for p in seen if p is not None)
        out["training_peak"] = peak.peak
    if lottery is not None:
        out["prune_s"] = lottery.seconds["fit_end_0"]
        out["rewind_s"] = lottery.seconds["fit_start_pruned"]
        out["snapshot_s"] = lottery.seconds["fit_start_init"]
        out["boundary_peak"] = lottery.boundary_peak
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.ckpt"
        trainer.save_checkpoint(path)  # type: ignore[union-attr]
        out["checkpoint_bytes"] = path.stat().st_size
    return out


def worker_torch(params: int, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """``global_unstructured`` on the same initial weights, timed alone."""
    model = _module(params, device, args.optimizer)
    layers = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
    with Elapsed(model.device) as elapsed:
        torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured, amount=0.2)
    return {"prune_s": elapsed.seconds, "peak_rss": _peak_rss()}


def worker_steps(params: int, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Steady-state step time of one module from the same masked weights, with the callback (a round at
    ``--density``) and without it (the raw loop), fit by fit in turn."""
    model = _module(params, device, args.optimizer)
    data = _loader(shape_for(params)[1], args.batch, args.steps)
    lottery = HookTimes(amount=1 - args.density, verbose=False)
    _trainer(device, args.steps, [lottery]).fit(model, data)  # round 0, whose end prunes to the density
    pruned, masks, snapshot = lottery.state, lottery.masks, lottery.snapshot
    assert snapshot is not None
    masked = {k: v * masks[k] if k in masks else v for k, v in snapshot.items()}  # where both kinds start
    lottery.times.clear()
    times = {"plain": StepTimes(), "ours": StepTimes()}
    fits: dict[str, list[pl.Callback]] = {"plain": [times["plain"]], "ours": [lottery, times["ours"]]}
    for rep in range(args.reps):
        for name in ("plain", "ours") if rep % 2 == 0 else ("ours", "plain"):
            if name == "ours":
                lottery.set_state(pruned)  # round 1 again: rewound to the snapshot, masked
            else:
                model.load_state_dict(masked)
            _trainer(device, args.steps, fits[name]).fit(model, data)
    return {
        **{name: statistics.median(t.times) for name, t in times.items()},
        "hooks": statistics.median(lottery.times),
        "params": sum(p.numel() for p in model.parameters()),
        "density": sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()),
        "enforcement": lottery.enforcement,
    }


def _in_process(kind: str, size: str, args: argparse.Namespace, optimizer: str, density: float = 1.0) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind, "--sizes", size, "--device", args.device]
    command += ["--steps", str(args.steps), "--batch", str(args.batch), "--reps", str(args.reps)]
    command += ["--optimizer", optimizer, "--density", str(density)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} at {size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_boundary(size: str, args: argparse.Namespace) -> dict[str, Any]:
    """The round boundary, memory and checkpoint bytes at one size, with the first optimizer."""
    plain = _in_process("plain", size, args, args.optimizers[0])
    ours = _in_process("ours", size, args, args.optimizers[0])
    theirs = _in_process("torch", size, args, args.optimizers[0])
    n = ours["params"]
    row = {
        "size": size,
        "params": n,
        "boundary_s": ours["prune_s"] + ours["rewind_s"],
        "prune_s": ours["prune_s"],
        "rewind_s": ours["rewind_s"],
        "torch_s": theirs["prune_s"],
        "rss_over_plain": (ours["peak_rss"] - plain["peak_rss"]) / n,
        "checkpoint_over_plain": (ours["checkpoint_bytes"] - plain["checkpoint_bytes"]) / n,
    }
    if args.device == "cuda":
        row["device_over_plain"] = (ours["peak_device"] - plain["peak_device"]) / n
        row["boundary_over_training"] = (ours["boundary_peak"] - ours["training_peak"]) / n
    return row


def measure_steps(size: str, args: argparse.Namespace, optimizer: str, density: float) -> dict[str, Any]:
    """The per-step comparison at one size, optimizer and density."""
    steps = _in_process("steps", size, args, optimizer, density)
    return {
        "size": size,
        "params": steps["params"],
        "optimizer": optimizer,
        "density": steps["density"],
        "enforcement": steps["enforcement"],
        "step_plain_s": steps["plain"],
        "step_ours_s": steps["ours"],
        "hooks_s": steps["hooks"],
    }


def boundary_table(rows: list[dict[str, Any]], device: str) -> str:
    head = (
        "| parameters | round boundary (s): prune + rewind | torch `global_unstructured` (s) | x faster "
        "| peak RSS over plain (B/param) | checkpoint over plain (B/param) |"
    )
    if device == "cuda":
        head += " peak device memory over plain (B/param) | boundary over training peak (B/param) |"
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for r in rows:
        line = (
            f"| {r['params'] / 1e6:.1f}M | {r['boundary_s']:.2f} ({r['prune_s']:.2f} + {r['rewind_s']:.2f}) "
            f"| {r['torch_s']:.2f} | {r['torch_s'] / r['prune_s']:.1f} "
            f"| {r['rss_over_plain']:.2f} | {r['checkpoint_over_plain']:.2f} |"
        )
        if device == "cuda":
            line += f" {r['device_over_plain']:.2f} | {r['boundary_over_training']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def steps_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| parameters | optimizer | weights kept | masks enforced on | step, raw loop / with the callback (s) "
        "| per-step overhead | of which the callback's own work |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['params'] / 1e6:.1f}M | {r['optimizer']} | {100 * r['density']:.1f}% | {r['enforcement']} "
            f"| {r['step_plain_s']:.4f} / {r['step_ours_s']:.4f} "
            f"| {100 * (r['step_ours_s'] / r['step_plain_s'] - 1):+.1f}% "
            f"| {1e3 * r['hooks_s']:.2f} ms ({100 * r['hooks_s'] / r['step_plain_s']:.1f}%) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M", "100M", "300M"], choices=list(SIZES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=5, help="steps per fit (>= 2: the first of each is a warm-up)")
    parser.add_argument("--batch", type=int, default=256, help="rows per step")
    parser.add_argument("--reps", type=int, default=3, help="fits per variant in the per-step comparison")
    parser.add_argument("--optimizers", nargs="+", default=["adam", "sgd"], choices=["adam", "sgd"])
    parser.add_argument(
        "--densities", nargs="+", type=float, default=[0.2, 0.04, 0.01], help="weights a pruned round keeps, in (0, 1)"
    )
    parser.add_argument("--parts", nargs="+", default=["boundary", "steps"], choices=["boundary", "steps"])
    parser.add_argument("--worker", choices=["plain", "ours", "torch", "steps"], help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help=argparse.SUPPRESS)
    parser.add_argument("--density", type=float, default=0.2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error(f"--steps must be >= 2 (the first step of each fit is a warm-up), got {args.steps}")
    wrong = [d for d in args.densities if not 0 < d < 1]
    if wrong:
        parser.error(f"--densities must be in the open interval (0, 1), got {wrong}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    warnings.filterwarnings("ignore")
    if args.worker is not None:
        params = SIZES[args.sizes[0]]
        kinds = {
            "plain": lambda: worker_fits(params, args.device, args, with_callback=False),
            "ours": lambda: worker_fits(params, args.device, args, with_callback=True),
            "torch": lambda: worker_torch(params, args.device, args),
            "steps": lambda: worker_steps(params, args.device, args),
        }
        print(json.dumps(kinds[args.worker]()))
        return
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPUs"
    print(
        f"torch {torch.__version__}, {device}, batch {args.batch}, {args.steps} steps a fit, "
        f"{args.reps} fits of each kind in the per-step comparison"
    )
    boundary, steps = [], []
    for size in args.sizes:
        if "boundary" in args.parts:
            boundary.append(measure_boundary(size, args))
            print(json.dumps(boundary[-1]), flush=True)
        for optimizer in args.optimizers if "steps" in args.parts else []:
            for density in args.densities:
                steps.append(measure_steps(size, args, optimizer, density))
                print(json.dumps(steps[-1]), flush=True)
    if boundary:
        print(boundary_table(boundary, args.device))
    if steps:
        print(steps_table(steps))


if __name__ == "__main__":
    main()
