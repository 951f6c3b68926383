"""The DataModules (lth_lightning/data/datamodule.py): reading, splitting, checks, and the real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, accuracy, lean_trainer
from idx_files import FILES, tiny_arrays, tiny_datamodule_class, write_dataset

from lth_lightning import (
    MLP,
    DatasetFileError,
    FashionMNISTDataModule,
    IDXFormatError,
    LotteryClassifier,
    MNISTDataModule,
    read_idx,
)

# ----------------------------------------------------------------------------- IDX reader


def _tiny(tmp_path: Path, gz: bool = True, **kwargs):
    arrays = tiny_arrays()
    md5s = write_dataset(tmp_path / "FashionMNIST" / "raw", arrays, gz=gz)
    dm = tiny_datamodule_class(md5s)(data_dir=tmp_path, val_size=40, **kwargs)
    return dm, arrays


@pytest.mark.parametrize("gz", [True, False])
def test_datamodule_reads_and_splits(tmp_path, gz):
    dm, arrays = _tiny(tmp_path, gz=gz)
    dm.prepare_data()
    dm.setup("fit")
    x_tr, y_tr = dm.split("train")
    x_val, y_val = dm.split("val")
    x_te, y_te = dm.split("test")
    assert x_tr.shape == (160, 1, 28, 28) and x_val.shape == (40, 1, 28, 28) and x_te.shape == (50, 1, 28, 28)
    # Every training image lands in exactly one of train/val, unchanged but scaled to [0, 1].
    all_x = torch.cat([x_tr, x_val]).flatten(1)
    original = torch.from_numpy(arrays[FILES[0]]).flatten(1).float() / 255
    assert torch.equal(all_x.sort(0).values, original.sort(0).values)
    assert sorted(torch.cat([y_tr, y_val]).tolist()) == sorted(arrays[FILES[1]].tolist())
    assert y_te.tolist() == arrays[FILES[3]].tolist()
    assert torch.equal(x_te.flatten(1), torch.from_numpy(arrays[FILES[2]]).flatten(1).float() / 255)


def test_split_is_seeded(tmp_path):
    def val_set(seed):
        dm, _ = _tiny(tmp_path, split_seed=seed)
        dm.setup("fit")
        return {tuple(row.tolist()) for row in (dm.split("val")[0].flatten(1) * 255).round().to(torch.uint8)[:, :16]}

    assert val_set(0) == val_set(0)
    assert val_set(0) != val_set(1)


def test_normalize_and_flatten(tmp_path):
    dm, arrays = _tiny(tmp_path, normalize="standard", flatten=True)
    dm.setup("test")
    x, _ = dm.split("test")
    expected = (torch.from_numpy(arrays[FILES[2]]).float().flatten(1) / 255 - 0.2860) / 0.3530
    assert x.shape == (50, 784) and torch.allclose(x, expected)


def test_fit_with_the_datamodule_and_val_size_zero(tmp_path):
    dm, _ = _tiny(tmp_path, batch_size=32)
    model = LotteryClassifier(net=MLP((784, 16, 10)), lr=1e-3)
    trainer = lean_trainer(tmp_path, max_epochs=2, enable_progress_bar=True)
    trainer.fit(model, datamodule=dm)
    assert trainer.num_training_batches == 5 and trainer.global_step == 10
    assert "val/acc" in trainer.callback_metrics
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert result["test/acc"] == pytest.approx(accuracy(model, *dm.split("test")), abs=1e-6)

    dm0, _ = _tiny(tmp_path / "zero", batch_size=50)
    dm0.val_size = 0
    trainer = lean_trainer(tmp_path, max_epochs=1)
    trainer.fit(LotteryClassifier(net=MLP((784, 10))), datamodule=dm0)
    assert "val/acc" not in trainer.callback_metrics and trainer.num_training_batches == 4


def test_mismatched_files_are_refused(tmp_path):
    arrays = tiny_arrays()
    arrays[FILES[1]] = arrays[FILES[1]][:-1]
    md5s = write_dataset(tmp_path / "FashionMNIST" / "raw", arrays)
    dm = tiny_datamodule_class(md5s)(data_dir=tmp_path)
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.gz holds 200 images but .*labels.* 199 labels"):
        dm.setup("fit")
    arrays = tiny_arrays()
    arrays[FILES[3]][0] = 12
    md5s = write_dataset(tmp_path / "b" / "FashionMNIST" / "raw", arrays)
    dm = tiny_datamodule_class(md5s)(data_dir=tmp_path / "b", val_size=10)
    with pytest.raises(IDXFormatError, match="t10k-labels-idx1-ubyte.gz has label 12; FashionMNIST has 10 classes"):
        dm.setup("fit")
    dm = tiny_datamodule_class(md5s)(data_dir=tmp_path / "b", val_size=200)
    with pytest.raises(ValueError, match="`val_size` must be smaller than the 200 training examples, got 200"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1, got 0"),
        ({"eval_batch_size": 0}, "`eval_batch_size` must be an integer >= 1 or None, got 0"),
        ({"val_size": -1}, "`val_size` must be an integer >= 0, got -1"),
        ({"normalize": "zscore"}, "`normalize` must be 'unit' or 'standard', got 'zscore'"),
    ],
)
def test_datamodule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FashionMNISTDataModule(**kwargs)


def test_files_are_checked_until_the_data_is_in_memory(tmp_path):
    """Every fit calls prepare_data; once setup has read the data, later rounds do not md5 the files again."""
    dm, _ = _tiny(tmp_path)
    images = tmp_path / "FashionMNIST" / "raw" / f"{FILES[0]}.gz"
    good = images.read_bytes()
    images.write_bytes(b"truncated")
    with pytest.raises(DatasetFileError, match=f"{FILES[0]}.gz has md5 [0-9a-f]{{32}}, expected"):
        dm.prepare_data()  # before the data is read, a corrupt file is refused
    images.write_bytes(good)
    dm.prepare_data()
    dm.setup("fit")
    x = dm.split("train")[0].clone()
    images.write_bytes(b"truncated")  # the files no longer matter: the data is in memory
    dm.prepare_data()
    dm.setup("fit")
    assert torch.equal(dm.split("train")[0], x)


def test_missing_and_corrupt_files_without_download(tmp_path):
    dm = FashionMNISTDataModule(data_dir=tmp_path)
    with pytest.raises(
        DatasetFileError,
        match=r"FashionMNIST file train-images-idx3-ubyte.gz not found in "
        r".*FashionMNIST/raw .*Pass download=True \(--data.download true\)"
        ".*To place it by hand, download train-images-idx3-ubyte.gz "
        r"\(md5 8d4fb7e6c68d591d4c3dfef9ec88bf0d\)",
    ):
        dm.prepare_data()
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"truncated")
    with pytest.raises(
        DatasetFileError,
        match=r"train-images-idx3-ubyte.gz has md5 [0-9a-f]{32}, expected "
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d: it is corrupted or truncated",
    ):
        dm.prepare_data()
    assert (raw / "train-images-idx3-ubyte.gz").read_bytes() == b"truncated"  # nothing lost


needs_shared = pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST").is_dir(), reason="../shared/data not present")


@needs_shared
def test_real_fashion_mnist():
    dm = FashionMNISTDataModule(data_dir=SHARED_DATA)
    dm.prepare_data()
    dm.setup("fit")
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = dm.split("train"), dm.split("val"), dm.split("test")
    assert len(y_tr) + len(y_val) == 60_000 and len(y_val) == 5_000 and len(y_te) == 10_000
    assert torch.cat([y_tr, y_val]).bincount().tolist() == [6000] * 10
    assert y_te.bincount().tolist() == [1000] * 10
    assert x_tr.shape[1:] == x_te.shape[1:] == (1, 28, 28)
    assert float(x_tr.min()) >= 0 and float(x_tr.max()) <= 1
    # Train and validation partition the official training images: each lands in exactly one.
    raw = read_idx(SHARED_DATA / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz")

    def keys(images):
        return sorted(img.numpy().tobytes() for img in images)

    ours = torch.cat([x_tr, x_val])[:, 0].mul(255).round().to(torch.uint8)
    assert keys(ours) == keys(raw)
    # Reproducible: the same seed gives the same validation set.
    again = FashionMNISTDataModule(data_dir=SHARED_DATA)
    again.setup("fit")
    assert torch.equal(again.split("val")[0], x_val) and torch.equal(again.split("val")[1], y_val)


@needs_shared
def test_real_mnist_counts():
    dm = MNISTDataModule(data_dir=SHARED_DATA, val_size=0)
    dm.prepare_data()
    dm.setup("test")
    assert dm.split("train")[0].shape == (60_000, 1, 28, 28) and len(dm.split("test")[1]) == 10_000


@needs_shared
def test_arrays_equal_torchvisions(tmp_path):
    torchvision = pytest.importorskip("torchvision", exc_type=ImportError)
    ours = FashionMNISTDataModule(data_dir=SHARED_DATA, val_size=0)
    ours.setup("fit")
    # torchvision processes raw files into its own folder: give it a copy of the files.
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_DATA / "FashionMNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    for train, split in ((True, "train"), (False, "test")):
        theirs = torchvision.datasets.FashionMNIST(tmp_path, train=train, download=False)
        x, y = ours.split(split)
        assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), theirs.data)
        assert torch.equal(y, theirs.targets)
