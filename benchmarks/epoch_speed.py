"""Epoch and round speed, side by side in one process: raw PyTorch vs the seed vs ModelPruning vs ours.

Every variant trains the seed's MLP (784-256-128-32-10, Adam, lr 1e-4) with batch 128 on the same
data. The machine's speed drifts by tens of percent within seconds (a shared 2-core VM does, from
one epoch to the next), so the variants are not timed one after the other: every run is cut into
chunks of 20 steps, and before each chunk, in the same process, each raw loop runs 20 steps of its
own. A variant's ratio is its total time over the raw loop's total time in the same chunks, so
both saw the same machine. A variant's chunks hold everything it does (steps, data loading,
hooks, epoch boundaries); the first epoch of every run is a warm-up and is left out. The table
also gives seconds per epoch (from the time per step) and each variant's peak memory (resident
set size on the CPU, allocated memory on a GPU; the raw loops run alongside add a few MB).

There are two raw loops: the notebook's (``torch.optim.Adam`` with torch's default, per-tensor
implementation on a CPU) and the same loop with the fused Adam kernel that ``LotteryClassifier``
uses. The first answers "how fast is it against what I had", the second isolates what the
framework costs.

    python benchmarks/epoch_speed.py                       # real Fashion-MNIST from ../shared/data
    python benchmarks/epoch_speed.py --device cuda         # on a GPU
    python benchmarks/epoch_speed.py --epochs 2 --reps 1 --limit 20 --round-reps 1   # a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelPruning
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.callbacks.snapshot import rewind
from lth_lightning.data.loader import EpochShards, TensorBatches
from lth_lightning.pruning.magnitude import prune

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


# ----------------------------------------------------------------------------- memory


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):  # Linux: "5" resets the resident-set high-water mark (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- data


class PILDataset(Dataset):
    """The seed's data path: a torchvision-style dataset converting each uint8 image through PIL."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images.numpy(), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")  # as torchvision.datasets.FashionMNIST does
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float().div(255).unsqueeze(0)  # ToTensor
        return x, self.labels[i]


def load_data(data_dir: Path, limit: int | None) -> tuple[FashionMNISTDataModule, str]:
    if (data_dir / "FashionMNIST" / "raw").is_dir():
        dm = FashionMNISTDataModule(data_dir, batch_size=128, val_size=5000)
        source = f"Fashion-MNIST from {data_dir}"
    else:  # random data of the same shape, in IDX files of our own
        from tempfile import mkdtemp

        root = Path(mkdtemp())
        raw = root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for name, n in (("train", 60000), ("t10k", 10000)):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            (raw / f"{name}-images-idx3-ubyte").write_bytes(
                bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes()
            )
            (raw / f"{name}-labels-idx1-ubyte").write_bytes(
                bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes()
            )
        dm = FashionMNISTDataModule(root, batch_size=128, val_size=5000)
        source = "random data of Fashion-MNIST's shape (../shared/data not found)"
    dm.setup("fit")
    if limit is not None:
        for split in ("train", "val", "test"):
            x, y = dm.split(split)
            dm._splits[split] = (x[: limit * 128], y[: limit * 128])
    return dm, source


# ----------------------------------------------------------------------------- the variants

RAW, RAW_FUSED = "raw PyTorch loop (tensor + randperm), notebook Adam", "raw PyTorch loop, fused Adam (as ours)"


def _adam(net: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=1e-4, fused=fused or None)


def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One plain training step: forward, cross-entropy, zero_grad, backward, optimizer step."""
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def raw_train_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One epoch of the floor loop: a permutation on the device, index slices, no DataLoader."""
    perm = torch.randperm(len(x), device=x.device)
    for i in range(0, len(x), 128):
        idx = perm[i : i + 128]
        train_step(net, opt, x[idx], y[idx])


class RawFloor:
    """The two raw loops, each with its own network, run in chunks of steps between the measured ones.

    Each keeps its own position in its own per-epoch permutation, so over a run it trains real
    epochs, just interleaved with the variant being measured.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.x, self.y, self.device = x.to(device), y.to(device), device
        torch.manual_seed(0)
        self.loops: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
        self._perm: dict[str, torch.Tensor] = {}
        self._pos: dict[str, int] = {}
        for name, fused in ((RAW, False), (RAW_FUSED, True)):
            net = MLP().to(device)
            self.loops[name] = (net, _adam(net, fused))
            self._pos[name] = len(self.x)  # a new permutation at the first step

    def chunk(self, steps: int) -> dict[str, float]:
        """Run ``steps`` steps of each raw loop; the seconds each took."""
        times = {}
        for name, (net, opt) in self.loops.items():
            _sync(self.device)
            start = time.perf_counter()
            for _ in range(steps):
                if self._pos[name] >= len(self.x):
                    self._perm[name], self._pos[name] = torch.randperm(len(self.x), device=self.device), 0
                idx = self._perm[name][self._pos[name] : self._pos[name] + 128]
                self._pos[name] += 128
                train_step(net, opt, self.x[idx], self.y[idx])
            _sync(self.device)
            times[name] = time.perf_counter() - start
        return times


class Interleaver:
    """Cuts a variant's run into chunks of ``steps`` steps and runs the raw loops' chunk between two.

    ``tick()`` is called at the start of every step. Every ``steps``-th call closes the variant's
    chunk (everything since the previous raw chunk: the steps, data loading, hooks, and epoch
    boundaries falling inside) and runs a raw chunk. Chunks that start in the first epoch
    (``warmup`` steps) are left out.
    """

    def __init__(self, floor: RawFloor, steps: int, warmup: int) -> None:
        self.floor, self.steps, self.warmup = floor, steps, warmup
        self.chunks: list[tuple[dict[str, float], float]] = []  # (raw chunk times, variant chunk time)
        self._count, self._start, self._raw = 0, 0.0, {}

    def tick(self) -> None:
        if self._count % self.steps == 0:
            self._close()
            self._raw = self.floor.chunk(self.steps)
            self._start = time.perf_counter()
        self._count += 1

    def close(self) -> None:
        """At the end of the run: keep the last chunk if it is a whole one."""
        if self._count % self.steps == 0:
            self._close()

    def _close(self) -> None:
        _sync(self.floor.device)
        now = time.perf_counter()
        if self._count >= self.warmup + self.steps:
            self.chunks.append((self._raw, now - self._start))


class InterleaveCallback(pl.Callback):
    def __init__(self, interleaver: Interleaver) -> None:
        self.interleaver = interleaver

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, i: int) -> None:
        self.interleaver.tick()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.interleaver.close()


def raw_chunks(il: Interleaver, epochs: int, steps_per_epoch: int) -> None:
    """The raw loops alone: their own rows (the variant's chunk is empty)."""
    for _ in range(epochs * steps_per_epoch):
        il.tick()
    il.close()


def seed_chunks(il: Interleaver, x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> None:
    """The seed notebook: DataLoader over a PIL-per-sample dataset, a plain loop, torch's default Adam."""
    torch.manual_seed(0)
    net = MLP().to(device)
    opt = _adam(net, fused=False)
    images = (x[:, 0] * 255).round().to(torch.uint8).cpu()
    loader = DataLoader(PILDataset(images, y.cpu()), batch_size=128, shuffle=True)
    for _ in range(epochs):
        for xb, yb in loader:
            il.tick()
            train_step(net, opt, xb.to(device), yb.to(device))
    il.close()


def plain_loop_chunks(il: Interleaver, dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> None:
    """A plain loop (no Lightning) over our in-memory batches, fused Adam: what the data path costs."""
    torch.manual_seed(0)
    net = MLP().to(device)
    opt = _adam(net, fused=True)
    x, y = (t.to(device) for t in dm.split("train"))
    shards = EpochShards(len(x), shuffle=True)
    for epoch in range(epochs):
        shards.set_epoch(epoch)
        for xb, yb in TensorBatches(x, y, 128, shards):
            il.tick()
            train_step(net, opt, xb, yb)
    il.close()


class BareModule(pl.LightningModule):
    """The least a LightningModule can be: the MLP, a loss, the fused Adam. No metrics, no logging."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLP()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return _adam(self, fused=True)


def _trainer(device: torch.device, epochs: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator=device.type,
        devices=1,
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def model_pruning_chunks(il: Interleaver, x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> None:
    """Lightning's built-in ModelPruning in lottery-ticket mode over a TensorDataset DataLoader."""
    torch.manual_seed(0)
    pruning = ModelPruning("l1_unstructured", amount=0.2, use_lottery_ticket_hypothesis=True, verbose=0)
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=128, shuffle=True)
    _trainer(device, epochs, [pruning, InterleaveCallback(il)]).fit(LotteryClassifier(lr=1e-4), loader)


def bare_lightning_chunks(il: Interleaver, dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> None:
    """Lightning's own loop around the bare module, with our DataModule and no callback."""
    torch.manual_seed(0)
    _trainer(device, epochs, [InterleaveCallback(il)]).fit(BareModule(), datamodule=dm)


def ours_chunks(il: Interleaver, dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> None:
    """LotteryClassifier + LotteryTicketCallback + our DataModule in a real Trainer."""
    torch.manual_seed(0)
    callbacks = [LotteryTicketCallback(verbose=False), InterleaveCallback(il)]
    _trainer(device, epochs, callbacks).fit(LotteryClassifier(lr=1e-4), datamodule=dm)


# ----------------------------------------------------------------------------- whole rounds


def raw_round(dm: FashionMNISTDataModule, epochs: int, device: torch.device, fused: bool) -> float:
    """A raw loop doing a round's work as ours does it: train; validate and checkpoint every epoch,
    keeping the weights of the best validation loss; test the final and the best weights; prune,
    rewind, save the masks and the trained weights."""
    x, y = (t.to(device) for t in dm.split("train"))
    xv, yv = (t.to(device) for t in dm.split("val"))
    xt, yt = (t.to(device) for t in dm.split("test"))
    torch.manual_seed(0)
    net = MLP().to(device)
    init = copy.deepcopy(net.state_dict())
    opt = _adam(net, fused)
    _sync(device)
    start = time.perf_counter()

    def evaluate(xe: torch.Tensor, ye: torch.Tensor) -> tuple[float, float]:
        loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(0, len(xe), 1000):
                logits = net(xe[i : i + 1000])
                loss += F.cross_entropy(logits, ye[i : i + 1000], reduction="sum")
                correct += (logits.argmax(1) == ye[i : i + 1000]).sum()
        return float(loss) / len(xe), float(correct) / len(xe)

    best, best_state = float("inf"), None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(epochs):
            raw_train_epoch(net, opt, x, y)
            val_loss, _ = evaluate(xv, yv)
            if val_loss < best:
                best, best_state = val_loss, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict()}, Path(tmp) / "last.ckpt")
        evaluate(xt, yt)
        final = copy.deepcopy(net.state_dict())
        net.load_state_dict(best_state)
        evaluate(xt, yt)
        net.load_state_dict(final)
        weights = {n: p.detach() for n, p in net.named_parameters() if n.endswith("weight")}
        masks = prune(weights, {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, 0.2, rounds=1)
        torch.save(masks, Path(tmp) / "masks.pt")
        torch.save(net.state_dict(), Path(tmp) / "weights.pt")
        with torch.no_grad():
            net.load_state_dict(init)
            for n, p in net.named_parameters():
                if n in masks:
                    p.mul_(masks[n])
    _sync(device)
    return time.perf_counter() - start


def ours_round(dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> float:
    """One round through run_lottery: fit + validation every epoch + test + early-stop test + prune + files.

    The plots and TensorBoard summary (redrawn after every round) are timed apart: see ``report_cost``."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = {
            "accelerator": device.type,
            "devices": 1,
            "max_epochs": epochs,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "num_sanity_val_steps": 0,
        }
        _sync(device)
        start = time.perf_counter()
        run_lottery(
            LotteryClassifier(lr=1e-4),
            dm,
            rounds=1,
            trainer=trainer,
            out_dir=tmp,
            progress=False,
            lottery=LotteryTicketCallback(verbose=False),
            report=False,
        )
        _sync(device)
        return time.perf_counter() - start


def report_cost(rounds: int = 3) -> float:
    """Seconds to redraw the plots and the TensorBoard summary of a run folder once."""
    from lth_lightning.experiment.dashboard.tensorboard import write_run_report
    from lth_lightning.experiment.record.paths import RunPaths
    from lth_lightning.experiment.record.round_result import RoundResult
    from lth_lightning.io import save_tensors
    from lth_lightning.metric_names import MetricNames

    rows = [
        RoundResult(r, 0.8**r, {"test_acc": 0.88, "test_acc_at_best_val": 0.88}, best_val_step=100)
        for r in range(rounds)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        run = RunPaths(Path(tmp))
        for r in range(rounds):
            save_tensors({"net.layers.0.weight": torch.rand(256, 784) < 0.8**r}, run.masks(r))
        write_run_report(run, rows, {}, MetricNames())  # imports and first use
        start = time.perf_counter()
        write_run_report(run, rows, {}, MetricNames())
        return time.perf_counter() - start


def masking_share(dm: FashionMNISTDataModule, device: torch.device, steps: int = 200) -> tuple[float, float, float]:
    """Per-step cost of the callback's masking hooks, and the cost of pruning + rewinding once."""
    torch.manual_seed(0)
    model = LotteryClassifier(lr=1e-4).to(device)
    cb = LotteryTicketCallback(verbose=False)
    _trainer(device, 1, [cb]).fit(model, datamodule=dm)  # a round, so masks exist
    model.to(device)
    x, y = (t.to(device) for t in dm.split("train"))
    opt = model.configure_optimizers()  # the fused Adam of a real round
    params = dict(model.named_parameters())
    enforcer = cb._enforcer  # what on_fit_start binds for a round with these masks
    enforcer._params = [params[n] for n in cb.masks]
    enforcer._device_masks = [m.to(device=params[n].device, dtype=params[n].dtype) for n, m in cb.masks.items()]
    step_times, mask_times = [], []
    for i in range(steps):
        idx = torch.randint(0, len(x), (128,), device=device)
        _sync(device)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        t1 = time.perf_counter()
        cb.enforce_masks()  # what a round does after every step of an element-wise optimizer (Adam here)
        cb.on_train_batch_end(None, model, None, None, i)  # type: ignore[arg-type]
        _sync(device)
        t2 = time.perf_counter()
        step_times.append(t2 - t0)
        mask_times.append(t2 - t1)
    weights = {n: p.detach() for n, p in model.named_parameters() if n in cb.masks}
    _sync(device)
    t0 = time.perf_counter()
    prune(weights, cb.masks, 0.2, rounds=2)
    rewind(model, cb.snapshot)
    _sync(device)
    prune_rewind = time.perf_counter() - t0
    return statistics.median(mask_times), statistics.median(step_times), prune_rewind


# ----------------------------------------------------------------------------- main


def interleaving_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every interleaved benchmark takes: data, device, epochs, repetitions, chunk, limit."""
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions of every variant")
    parser.add_argument("--chunk", type=int, default=20, help="steps per chunk of the interleaving")
    parser.add_argument("--limit", type=int, default=None, help="use only this many batches of data (smoke tests)")


def checked_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """The device asked for, after checking it and the number of epochs."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is a warm-up), got {args.epochs}")
    return torch.device(args.device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    interleaving_arguments(parser)
    parser.add_argument("--round-epochs", type=int, default=2, help="epochs of the round comparison")
    parser.add_argument("--round-reps", type=int, default=3, help="repetitions of the round comparison")
    parser.add_argument("--skip", nargs="*", default=[], choices=["seed", "modelpruning", "plain", "bare", "rounds"])
    args = parser.parse_args(argv)
    device = checked_device(parser, args)
    warnings.filterwarnings("ignore")
    dm, source = load_data(args.data_dir, args.limit)
    x, y = dm.split("train")
    steps_per_epoch = -(-len(x) // 128)
    chunk = max(1, min(args.chunk, steps_per_epoch))
    floor = RawFloor(x, y, device)

    alone = "raw loops alone"
    variants: dict[str, Callable[[Interleaver], None]] = {
        alone: lambda il: raw_chunks(il, args.epochs, steps_per_epoch),
        "seed: DataLoader + PIL per sample, notebook Adam": lambda il: seed_chunks(il, x, y, args.epochs, device),
        "Lightning + ModelPruning(LTH), TensorDataset, fused Adam": lambda il: model_pruning_chunks(
            il, x, y, args.epochs, device
        ),
        "plain loop over our in-memory batches, fused Adam": lambda il: plain_loop_chunks(il, dm, args.epochs, device),
        "bare Lightning: minimal module + our DataModule, fused Adam": lambda il: bare_lightning_chunks(
            il, dm, args.epochs, device
        ),
        "ours: LotteryClassifier + callback + DataModule, fused Adam": lambda il: ours_chunks(
            il, dm, args.epochs, device
        ),
    }
    for key, name in (
        ("seed", "seed: DataLoader + PIL per sample, notebook Adam"),
        ("modelpruning", "Lightning + ModelPruning(LTH), TensorDataset, fused Adam"),
        ("plain", "plain loop over our in-memory batches, fused Adam"),
        ("bare", "bare Lightning: minimal module + our DataModule, fused Adam"),
    ):
        if key in args.skip:
            del variants[name]
    chunks: dict[str, list[tuple[dict[str, float], float]]] = {name: [] for name in variants}
    peaks: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.reps):
        for name, run in variants.items():
            _reset_peak(device)
            il = Interleaver(floor, chunk, warmup=steps_per_epoch)
            run(il)
            chunks[name] += il.chunks
            peaks[name] = max(peaks[name], _peak_mb(device))
    all_raw = [raw for runs in chunks.values() for raw, _ in runs]

    def per_epoch(seconds: float) -> float:  # seconds per chunk -> seconds per epoch
        return seconds / chunk * steps_per_epoch

    print(
        f"\nData: {source}; {len(x)} training examples, batch 128 ({steps_per_epoch} steps per epoch); "
        f"device {device}; torch {torch.__version__}, lightning {pl.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        "\n| loop | s/epoch | x raw loop | x raw loop, fused Adam | peak memory (MB) |\n| --- | --- | --- | --- | --- |"
    )
    for name in (RAW, RAW_FUSED):
        total = sum(raw[name] for raw in all_raw)
        vs_raw, vs_fused = total / sum(raw[RAW] for raw in all_raw), total / sum(raw[RAW_FUSED] for raw in all_raw)
        sec = per_epoch(total / len(all_raw))
        print(f"| {name} | {sec:.3f} | {vs_raw:.2f} | {vs_fused:.2f} | {peaks[alone]:.0f} |")
    for name, runs in chunks.items():
        if name == alone:
            continue
        total = sum(t for _, t in runs)
        vs_raw, vs_fused = total / sum(raw[RAW] for raw, _ in runs), total / sum(raw[RAW_FUSED] for raw, _ in runs)
        sec = per_epoch(total / len(runs))
        print(f"| {name} | {sec:.3f} | {vs_raw:.2f} | {vs_fused:.2f} | {peaks[name]:.0f} |")
    print(
        f"({len(all_raw)} chunks of {chunk} steps, each variant's chunk run right after a chunk of each raw loop; "
        "a ratio is the variant's total time over the raw loop's total time in the same chunks; "
        "the first epoch of every run is a warm-up)"
    )

    if "rounds" not in args.skip:
        round_fns: dict[str, Callable[[], float]] = {
            "raw": lambda: raw_round(dm, args.round_epochs, device, fused=False),
            "raw_fused": lambda: raw_round(dm, args.round_epochs, device, fused=True),
            "ours": lambda: ours_round(dm, args.round_epochs, device),
        }
        order = list(round_fns)
        rounds: dict[str, list[float]] = {name: [] for name in order}
        for rep in range(args.round_reps + 1):  # the first repetition warms up; the order rotates
            for name in order[rep % 3 :] + order[: rep % 3]:
                rounds[name].append(round_fns[name]())
        runs = {k: v[1:] for k, v in rounds.items()}

        def paired(name: str, floor_name: str) -> list[float]:
            return sorted(a / b for a, b in zip(runs[name], runs[floor_name], strict=True))

        print(
            f"\nWhole round ({args.round_epochs} epochs; validation and checkpoint every epoch; test of the final "
            "and of the early-stopping weights; prune, rewind, save). Ratios: median over "
            f"{args.round_reps} repetitions of one round each, next to each other, [lowest, highest]:"
        )
        print("| round | s | x raw loop | x raw loop, fused Adam |\n| --- | --- | --- | --- |")
        for label, name in (
            ("raw loop, notebook Adam", "raw"),
            ("raw loop, fused Adam", "raw_fused"),
            ("ours (run_lottery, 1 round)", "ours"),
        ):
            cells = [
                f"{statistics.median(r):.2f} [{r[0]:.2f}, {r[-1]:.2f}]"
                for r in (paired(name, "raw"), paired(name, "raw_fused"))
            ]
            print(f"| {label} | {statistics.median(runs[name]):.3f} | {cells[0]} | {cells[1]} |")
        print(f"Plots + TensorBoard summary, redrawn after every round (not in the round above): {report_cost():.2f} s")
        r_ours = statistics.median(runs["ours"])
        shares, prune_rewind = [], []
        for _ in range(3):
            mask, step, cost = masking_share(dm, device)
            shares.append((mask / step, mask, step))
            prune_rewind.append(cost)
        share, mask, step = sorted(shares)[1]
        print(
            f"\nMasking (the weights re-masked after each step) per step, median of 3 runs of 200 steps: "
            f"{1e3 * mask:.3f} ms of a "
            f"{1e3 * step:.3f} ms step ({100 * share:.1f}%; runs {', '.join(f'{100 * s[0]:.1f}%' for s in shares)}); "
            f"pruning + rewinding once: {1e3 * statistics.median(prune_rewind):.1f} ms "
            f"({100 * statistics.median(prune_rewind) / r_ours:.2f}% of a round)"
        )


if __name__ == "__main__":
    main()
