"""Writing tiny IDX datasets for tests."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from lth_lightning import FashionMNISTDataModule

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def tiny_arrays(n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FILES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_dataset(raw_dir: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, str]:
    """Write the four files; returns md5 of each ``.gz`` encoding keyed by ``<name>.gz``."""
    md5s = {}
    for name, array in arrays.items():
        blob = gzip.compress(idx_bytes(array), mtime=0)
        md5s[name + ".gz"] = hashlib.md5(blob).hexdigest()
        if gz:
            raw_dir.mkdir(parents=True, exist_ok=True)
            (raw_dir / (name + ".gz")).write_bytes(blob)
        else:
            write_idx(raw_dir / name, array)
    return md5s


def tiny_datamodule_class(md5s: dict[str, str]) -> type[FashionMNISTDataModule]:
    """A FashionMNIST DataModule whose checksums are those of tiny test files."""

    class TinyFashion(FashionMNISTDataModule):
        resources = tuple((name + ".gz", md5s[name + ".gz"]) for name in FILES)

    return TinyFashion
