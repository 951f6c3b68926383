"""DataModules for MNIST-family IDX datasets: fast, offline-safe, exact under DDP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from lth_lightning.data.download import fetch_files
from lth_lightning.data.idx import IDXFormatError, read_idx
from lth_lightning.data.loader import EpochShards, TensorBatches

__all__ = ["FashionMNISTDataModule", "IDXDataModule", "MNISTDataModule", "shuffle_seed_set_to"]


@contextmanager
def shuffle_seed_set_to(datamodule: Any, seed: int) -> Iterator[None]:
    """Within the block, ``datamodule.shuffle_seed`` (this package's DataModules' training order) is ``seed``; it is
    set back as it was after, whatever happens in the block."""
    had = datamodule.shuffle_seed
    datamodule.shuffle_seed = seed
    try:
        yield
    finally:
        datamodule.shuffle_seed = had


_TRAIN_IMAGES, _TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
_TEST_IMAGES, _TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


class IDXDataModule(pl.LightningDataModule):
    """Image classification data from four IDX files, held in memory as tensors.

    Files live where torchvision puts them, ``<data_dir>/<name>/raw/<file>.gz`` (uncompressed
    IDX files without ``.gz`` are read too), so an existing torchvision download folder works
    as is. Each split is one tensor, normalised once, moved once to the Trainer's device and
    served by :class:`~lth_lightning.data.loader.TensorBatches`: batches are index slices of a
    per-epoch permutation, with no per-example Python and no PIL. Under DDP every rank trains
    on its own disjoint shard of each epoch, and validation and test count every example
    exactly once over all ranks.

    Subclasses set ``dataset_name`` (the folder name), ``resources``, ``mirrors``, ``mean``, ``std`` and ``classes``.

    Args:
        data_dir: Root folder of the datasets.
        download: Fetch missing files from the official mirrors (md5-verified, atomic).
        val_size: Examples carved out of the training set for validation (a fixed, seeded
            split); 0 disables validation.
        split_seed: Seed of the train/validation split.
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; defaults to ``max(batch_size, 1000)``.
        normalize: ``"unit"`` scales pixels to [0, 1]; ``"standard"`` also subtracts the
            dataset's mean and divides by its standard deviation.
        flatten: Serve images as vectors ``(N, 784)`` instead of ``(N, 1, 28, 28)``.
        shuffle_seed: Seed of the per-epoch training permutations.
        drop_last: Drop the last, smaller training batch of each epoch.
        mirrors: Base URLs to download from, replacing the official ones.

    Raises:
        ValueError: For an argument out of range (the message names it and the allowed range).
    """

    dataset_name: ClassVar[str] = ""
    resources: ClassVar[tuple[tuple[str, str], ...]] = ()
    default_mirrors: ClassVar[tuple[str, ...]] = ()
    mean: ClassVar[float] = 0.0
    std: ClassVar[float] = 1.0
    classes: ClassVar[tuple[str, ...]] = ()
    image_shape: ClassVar[tuple[int, int]] = (28, 28)

    def __init__(
        self,
        data_dir: str | Path = "./data",
        download: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        normalize: Literal["unit", "standard"] = "unit",
        flatten: bool = False,
        shuffle_seed: int = 0,
        drop_last: bool = False,
        mirrors: list[str] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        if eval_batch_size is not None and (not isinstance(eval_batch_size, int) or eval_batch_size < 1):
            raise ValueError(f"`eval_batch_size` must be an integer >= 1 or None, got {eval_batch_size!r}.")
        if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
            raise ValueError(f"`val_size` must be an integer >= 0, got {val_size!r}.")
        if normalize not in ("unit", "standard"):
            raise ValueError(f"`normalize` must be 'unit' or 'standard', got {normalize!r}.")
        self.data_dir = Path(data_dir)
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else max(batch_size, 1000)
        self.normalize: Literal["unit", "standard"] = normalize
        self.flatten = flatten
        self.shuffle_seed = shuffle_seed
        self.drop_last = drop_last
        self.mirrors = list(mirrors) if mirrors is not None else list(self.default_mirrors)
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._paths: dict[str, Path] = {}  # the files prepare_data checked in this process
        self.save_hyperparameters(ignore=["data_dir"])
        self.hparams["data_dir"] = str(self.data_dir)  # plain types only: checkpoints load with weights_only

    @property
    def raw_dir(self) -> Path:
        """Folder holding the four files."""
        return self.data_dir / self.dataset_name / "raw"

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def prepare_data(self) -> None:
        """Check (and, with ``download=True``, fetch) the files; runs on one process per node.

        Once the data is in memory (every fit after the first), the files are not read again.
        """
        if self._splits:
            return
        self._paths = fetch_files(
            self.raw_dir, self.resources, self.mirrors, download=self.download, dataset=self.dataset_name
        )

    def _read_split(self, paths: dict[str, Path], images: str, labels: str) -> tuple[Tensor, Tensor]:
        h, w = self.image_shape
        x = read_idx(paths[images], magic=2051, shape=(None, h, w))
        y = read_idx(paths[labels], magic=2049, shape=(None,))
        if x.shape[0] != y.shape[0]:
            raise IDXFormatError(
                f"{paths[images]} holds {x.shape[0]} images but {paths[labels]} holds {y.shape[0]} labels."
            )
        if y.numel() and int(y.max()) >= self.num_classes:
            raise IDXFormatError(
                f"{paths[labels]} has label {int(y.max())}; {self.dataset_name} has {self.num_classes} classes."
            )
        return self._to_float(x), y.long()

    def _to_float(self, x: Tensor) -> Tensor:
        out = x.to(torch.float32).div_(255.0)
        if self.normalize == "standard":
            out.sub_(self.mean).div_(self.std)
        out = out.unsqueeze(1)
        return out.flatten(1) if self.flatten else out

    def setup(self, stage: str | None = None) -> None:
        """Read and split the data once; later calls (every fit of every round) reuse it."""
        if self._splits:
            return
        paths = self._paths or fetch_files(
            self.raw_dir, self.resources, self.mirrors, download=False, dataset=self.dataset_name
        )
        x, y = self._read_split(paths, _TRAIN_IMAGES, _TRAIN_LABELS)
        if self.val_size >= x.shape[0]:
            raise ValueError(
                f"`val_size` must be smaller than the {x.shape[0]} training examples, got {self.val_size}."
            )
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[: self.val_size].sort().values, perm[self.val_size :].sort().values
        self._splits["train"] = (x[train_idx], y[train_idx])
        self._splits["val"] = (x[val_idx], y[val_idx])
        self._splits["test"] = self._read_split(paths, _TEST_IMAGES, _TEST_LABELS)

    def split(self, name: Literal["train", "val", "test"]) -> tuple[Tensor, Tensor]:
        """The tensors of one split (call :meth:`setup` first)."""
        if not self._splits:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run yet.")
        return self._splits[name]

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _batches(self, split: Literal["train", "val", "test"], shuffle: bool) -> TensorBatches:
        x, y = self.split(split)
        device = self._device()
        if x.device != device:  # move once per device; later rounds reuse the resident copy
            x, y = x.to(device), y.to(device)
            self._splits[split] = (x, y)
        rank, world = self._rank_world()
        sampler = EpochShards(x.shape[0], shuffle=shuffle, seed=self.shuffle_seed, rank=rank, world_size=world)
        size = self.batch_size if shuffle else self.eval_batch_size
        return TensorBatches(x, y, size, sampler, drop_last=self.drop_last and shuffle)

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches | list[TensorBatches]:
        return self._batches("val", shuffle=False) if self.val_size else []

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)


class FashionMNISTDataModule(IDXDataModule):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test 28x28 images, 10 classes."""

    dataset_name = "FashionMNIST"
    resources = (
        (_TRAIN_IMAGES, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        (_TRAIN_LABELS, "25c81989df183df01b3e8a0aad5dffbe"),
        (_TEST_IMAGES, "bef4ecab320f06d8554ea6380940ec79"),
        (_TEST_LABELS, "bb300cfdad3c16e7a12a480ee83cd310"),
    )
    default_mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    mean, std = 0.2860, 0.3530
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class MNISTDataModule(IDXDataModule):
    """MNIST (LeCun et al., 1998): 60,000 training and 10,000 test 28x28 digits, 10 classes."""

    dataset_name = "MNIST"
    resources = (
        (_TRAIN_IMAGES, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        (_TRAIN_LABELS, "d53e105ee54ea40749a09fcbcd1e9432"),
        (_TEST_IMAGES, "9fb629c4189551a2d022fa330f9573f3"),
        (_TEST_LABELS, "ec29112dd5afa0611ce80d1b7f02629c"),
    )
    default_mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    mean, std = 0.1307, 0.3081
    classes = tuple(str(d) for d in range(10))
