"""Epoch and round speed, side by side in one process: raw PyTorch vs the seed vs ModelPruning vs ours.

Every variant trains the seed's MLP (784-256-128-32-10, Adam) with the same batch size on the same
data. Repetitions are interleaved (raw, seed, ModelPruning, ours, raw, ...) so that machine noise
hits every variant alike; the table reports the median seconds per epoch, the ratio to the raw
loop, and each variant's peak memory (resident set size on the CPU, allocated memory on a GPU).

    python benchmarks/epoch_speed.py                       # real Fashion-MNIST from ../shared/data
    python benchmarks/epoch_speed.py --device cuda         # on a GPU
    python benchmarks/epoch_speed.py --epochs 1 --reps 1 --limit 20   # a smoke test
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
from lth_lightning.pruning import prune

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


def raw_train_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One epoch of the floor loop: a permutation on the device, index slices, no DataLoader."""
    perm = torch.randperm(len(x), device=x.device)
    for i in range(0, len(x), 128):
        idx = perm[i : i + 128]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def raw_epochs(x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> list[float]:
    """The floor: one tensor on the device, randperm + index, no DataLoader, no framework."""
    torch.manual_seed(0)
    net = MLP().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x, y = x.to(device), y.to(device)
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        raw_train_epoch(net, opt, x, y)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def seed_epochs(x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> list[float]:
    """The seed notebook: DataLoader over a PIL-per-sample dataset, a plain loop."""
    torch.manual_seed(0)
    net = MLP().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    images = (x[:, 0] * 255).round().to(torch.uint8).cpu()
    loader = DataLoader(PILDataset(images, y.cpu()), batch_size=128, shuffle=True)
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class EpochTimer(pl.Callback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._start = device, [], 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter() - self._start)


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


def model_pruning_epochs(x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> list[float]:
    """Lightning's built-in ModelPruning in lottery-ticket mode over a TensorDataset DataLoader."""
    torch.manual_seed(0)
    model = LotteryClassifier(lr=1e-4)
    timer = EpochTimer(device)
    pruning = ModelPruning("l1_unstructured", amount=0.2, use_lottery_ticket_hypothesis=True, verbose=0)
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=128, shuffle=True)
    _trainer(device, epochs, [pruning, timer]).fit(model, loader)
    return timer.times


def ours_epochs(dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> list[float]:
    """LotteryClassifier + LotteryTicketCallback + our DataModule in a real Trainer."""
    torch.manual_seed(0)
    model = LotteryClassifier(lr=1e-4)
    timer = EpochTimer(device)
    _trainer(device, epochs, [LotteryTicketCallback(verbose=False), timer]).fit(model, datamodule=dm)
    return timer.times


# ----------------------------------------------------------------------------- whole rounds


def raw_round(dm: FashionMNISTDataModule, epochs: int, device: torch.device) -> float:
    """A raw loop doing a round's work as ours does it: train; validate and checkpoint every epoch,
    keeping the weights of the best validation loss; test the final and the best weights; prune,
    rewind, save the masks and the trained weights."""
    x, y = (t.to(device) for t in dm.split("train"))
    xv, yv = (t.to(device) for t in dm.split("val"))
    xt, yt = (t.to(device) for t in dm.split("test"))
    torch.manual_seed(0)
    net = MLP().to(device)
    init = copy.deepcopy(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
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
        )
        _sync(device)
        return time.perf_counter() - start


def report_cost(rounds: int = 3) -> float:
    """Seconds to redraw the plots and the TensorBoard summary of a run folder once."""
    from lth_lightning.report import write_report

    rows = [{"round": r, "density": 0.8**r, "test_acc": 0.88, "best_val_step": 100} for r in range(rounds)]
    masks = {"net.layers.0.weight": torch.ones(256, 784, dtype=torch.bool)}
    with tempfile.TemporaryDirectory() as tmp:
        write_report(tmp, rows, masks, {})  # imports and first use
        start = time.perf_counter()
        write_report(tmp, rows, masks, {})
        return time.perf_counter() - start


def masking_share(dm: FashionMNISTDataModule, device: torch.device, steps: int = 200) -> tuple[float, float, float]:
    """Per-step cost of the callback's masking hooks, and the cost of pruning + rewinding once."""
    torch.manual_seed(0)
    model = LotteryClassifier(lr=1e-4).to(device)
    cb = LotteryTicketCallback(verbose=False)
    _trainer(device, 1, [cb]).fit(model, datamodule=dm)  # a round, so masks exist
    model.to(device)
    x, y = (t.to(device) for t in dm.split("train"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    cb._params = {n: p for n, p in model.named_parameters() if n in cb.masks}
    cb._device_masks = {
        n: m.to(device=p.device, dtype=p.dtype) for (n, p), m in zip(cb._params.items(), cb.masks.values(), strict=True)
    }
    step_times, mask_times = [], []
    for i in range(steps):
        idx = torch.randint(0, len(x), (128,), device=device)
        _sync(device)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        _sync(device)
        t1 = time.perf_counter()
        cb.on_before_optimizer_step(None, model, opt)  # type: ignore[arg-type]
        _sync(device)
        t2 = time.perf_counter()
        opt.step()
        _sync(device)
        t3 = time.perf_counter()
        cb.on_train_batch_end(None, model, None, None, i)  # type: ignore[arg-type]
        _sync(device)
        t4 = time.perf_counter()
        step_times.append(t4 - t0)
        mask_times.append((t2 - t1) + (t4 - t3))
    weights = {n: p.detach() for n, p in model.named_parameters() if n in cb.masks}
    _sync(device)
    t0 = time.perf_counter()
    prune(weights, cb.masks, 0.2, rounds=2)
    cb._rewind(model)
    _sync(device)
    prune_rewind = time.perf_counter() - t0
    return statistics.median(mask_times), statistics.median(step_times), prune_rewind


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the median epoch is reported")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions of every variant")
    parser.add_argument("--round-epochs", type=int, default=2, help="epochs of the round comparison")
    parser.add_argument("--limit", type=int, default=None, help="use only this many batches of data (smoke tests)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["seed", "modelpruning", "rounds"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    dm, source = load_data(args.data_dir, args.limit)
    x, y = dm.split("train")

    variants: dict[str, Callable[[], list[float]]] = {
        "raw PyTorch loop (tensor + randperm)": lambda: raw_epochs(x, y, args.epochs, device),
        "seed: DataLoader + PIL per sample": lambda: seed_epochs(x, y, args.epochs, device),
        "Lightning + ModelPruning(LTH), TensorDataset": lambda: model_pruning_epochs(x, y, args.epochs, device),
        "ours: LotteryClassifier + callback + DataModule": lambda: ours_epochs(dm, args.epochs, device),
    }
    if "seed" in args.skip:
        del variants["seed: DataLoader + PIL per sample"]
    if "modelpruning" in args.skip:
        del variants["Lightning + ModelPruning(LTH), TensorDataset"]
    epoch_times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.reps):
        for name, run in variants.items():
            _reset_peak(device)
            times = run()
            epoch_times[name] += times[1:] if len(times) > 1 else times  # the first epoch warms up
            peaks[name] = max(peaks[name], _peak_mb(device))
    raw = statistics.median(epoch_times["raw PyTorch loop (tensor + randperm)"])
    print(
        f"\nData: {source}; {len(x)} training examples, batch 128; device {device}; "
        f"torch {torch.__version__}, lightning {pl.__version__}, {torch.get_num_threads()} threads"
    )
    print("\n| loop | s/epoch | x raw loop | peak memory (MB) |\n| --- | --- | --- | --- |")
    for name, times in epoch_times.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.3f} | {median / raw:.2f} | {peaks[name]:.0f} |")

    if "rounds" not in args.skip:
        raw_rounds, our_rounds = [], []
        for _ in range(args.reps):
            raw_rounds.append(raw_round(dm, args.round_epochs, device))
            our_rounds.append(ours_round(dm, args.round_epochs, device))
        r_raw, r_ours = statistics.median(raw_rounds), statistics.median(our_rounds)
        print(
            f"\nWhole round ({args.round_epochs} epochs; validation and checkpoint every epoch; test of the final "
            "and of the early-stopping weights; prune, rewind, save):"
        )
        print(
            f"| round | s | x raw |\n| --- | --- | --- |\n| raw loop | {r_raw:.3f} | 1.00 |\n"
            f"| ours (run_lottery, 1 round) | {r_ours:.3f} | {r_ours / r_raw:.2f} |"
        )
        mask, step, prune_rewind = masking_share(dm, device)
        print(
            f"\nMasking (gradient + weight masks) per step: {1e3 * mask:.3f} ms of a {1e3 * step:.3f} ms step "
            f"({100 * mask / step:.1f}%); pruning + rewinding once: {1e3 * prune_rewind:.1f} ms "
            f"({100 * prune_rewind / r_ours:.2f}% of a round)"
        )


if __name__ == "__main__":
    main()
