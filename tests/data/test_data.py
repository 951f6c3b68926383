"""IDX reading, downloading, DataModules and sharding."""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, accuracy, lean_trainer
from idx_files import FILES, idx_bytes, tiny_arrays, tiny_datamodule_class, write_dataset, write_idx

from lth_lightning import (
    MLP,
    DatasetFileError,
    EpochShards,
    FashionMNISTDataModule,
    IDXFormatError,
    LotteryClassifier,
    MNISTDataModule,
    TensorBatches,
    read_idx,
)
from lth_lightning.data.download import fetch_files

# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("name", ["images.gz", "images"])
def test_read_idx_gz_and_raw(tmp_path, name):
    array = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    path = write_idx(tmp_path / name, array)
    out = read_idx(path, magic=2051, shape=(None, 28, 28))
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(array))


def test_read_idx_labels(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([3, 1, 4, 1, 5], dtype=np.uint8))
    assert read_idx(path, magic=2049).tolist() == [3, 1, 4, 1, 5]


def test_read_idx_errors(tmp_path):
    good = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    cases = {
        "bad_magic": (b"\x01\x02" + good[2:], r"has an invalid magic number 16910339 \(0x01020803\)"),
        "short": (good[:3], "is truncated: 3 bytes, no complete header"),
        "header_cut": (good[:10], r"is truncated inside its header \(10 of 16 bytes\)"),
        "data_cut": (
            good[:-5],
            r"is truncated: its header declares shape \(2, 28, 28\) \(1568 bytes of data\), "
            "but only 1563 bytes follow",
        ),
        "extra": (good + b"\x00\x00", r"has 2 bytes beyond the shape \(2, 28, 28\)"),
    }
    for name, (blob, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(IDXFormatError, match=f"IDX file {path} {message}"):
            read_idx(path)
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(IDXFormatError, match="has magic number 2049, expected 2051"):
        read_idx(path, magic=2051)
    path = write_idx(tmp_path / "small", np.zeros((2, 14, 14), dtype=np.uint8))
    with pytest.raises(IDXFormatError, match=r"has shape \(2, 14, 14\), expected \('\*', 28, 28\)"):
        read_idx(path, shape=(None, 28, 28))
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(IDXFormatError, match="Cannot read IDX file .*broken.gz: .*corrupted or truncated"):
        read_idx(path)
    path = tmp_path / "garbage.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(IDXFormatError, match="Cannot read IDX file .*garbage.gz"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="IDX file .*missing does not exist"):
        read_idx(tmp_path / "missing")


# ----------------------------------------------------------------------------- DataModule on tiny files


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


# ----------------------------------------------------------------------------- download over HTTP


class _Server:
    """A local HTTP server on 127.0.0.1 serving given bytes per path, counting requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                blob = outer.files.get(self.path.rsplit("/", 1)[-1])
                if blob is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _blobs(arrays):
    return {name + ".gz": gzip.compress(idx_bytes(a), mtime=0) for name, a in arrays.items()}


def test_download_happy_path_then_resume(tmp_path):
    arrays = tiny_arrays()
    blobs = _blobs(arrays)
    md5s = write_dataset(tmp_path / "unused", arrays)
    cls = tiny_datamodule_class(md5s)
    with _Server(blobs) as server:
        dm = cls(data_dir=tmp_path / "data", download=True, mirrors=[server.url], val_size=20)
        umask = os.umask(0o027)  # a lab's shared data folder: downloads readable by the group
        try:
            dm.prepare_data()
        finally:
            os.umask(umask)
        assert sorted(r.rsplit("/", 1)[-1] for r in server.requests) == sorted(blobs)
        raw = tmp_path / "data" / "FashionMNIST" / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(blobs)
        for name, blob in blobs.items():
            assert (raw / name).read_bytes() == blob
            assert (raw / name).stat().st_mode & 0o777 == 0o640
        dm.setup("fit")
        assert dm.split("test")[0].shape == (50, 1, 28, 28)
        # Resume: two files gone, only those two are fetched again.
        (raw / "t10k-images-idx3-ubyte.gz").unlink()
        (raw / "train-labels-idx1-ubyte.gz").unlink()
        server.requests.clear()
        cls(data_dir=tmp_path / "data", download=True, mirrors=[server.url]).prepare_data()
        assert sorted(r.rsplit("/", 1)[-1] for r in server.requests) == [
            "t10k-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
        ]


def test_download_md5_mismatch_leaves_no_file(tmp_path):
    arrays = tiny_arrays()
    blobs = _blobs(arrays)
    md5s = write_dataset(tmp_path / "unused", arrays)
    blobs["train-labels-idx1-ubyte.gz"] = blobs["train-labels-idx1-ubyte.gz"][:-7]  # truncated in transit
    with _Server(blobs) as server:
        dm = tiny_datamodule_class(md5s)(data_dir=tmp_path / "data", download=True, mirrors=[server.url])
        with pytest.raises(
            DatasetFileError,
            match=r"Could not download FashionMNIST file train-labels-idx1-ubyte.gz "
            r"into .* \(http://127.0.0.1:\d+/mirror/train-labels-idx1-ubyte.gz: "
            "md5 mismatch: got [0-9a-f]{32}, expected [0-9a-f]{32}\\). "
            "Nothing was written. To place it by hand",
        ):
            dm.prepare_data()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]  # no partial or .part file


def test_download_falls_back_to_the_next_mirror_and_reports_unreachable(tmp_path):
    arrays = tiny_arrays()
    md5s = write_dataset(tmp_path / "unused", arrays)
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    cls = tiny_datamodule_class(md5s)
    with pytest.raises(
        DatasetFileError,
        match=rf"Could not download FashionMNIST file train-images-idx3-ubyte.gz .*"
        rf"\({dead}train-images-idx3-ubyte.gz: .*Connection refused.*\)",
    ):
        cls(data_dir=tmp_path / "data", download=True, mirrors=[dead]).prepare_data()
    assert list((tmp_path / "data" / "FashionMNIST" / "raw").iterdir()) == []
    with _Server(_blobs(arrays)) as server:
        cls(data_dir=tmp_path / "data", download=True, mirrors=[dead, server.url]).prepare_data()
    assert len(list((tmp_path / "data" / "FashionMNIST" / "raw").iterdir())) == 4


def test_corrupt_existing_file_is_replaced_when_downloading(tmp_path):
    arrays = tiny_arrays()
    blobs = _blobs(arrays)
    raw = tmp_path / "FashionMNIST" / "raw"
    md5s = write_dataset(raw, arrays)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    with _Server(blobs) as server:
        found = fetch_files(raw, tuple(md5s.items()), [server.url], download=True, dataset="FashionMNIST")
        assert [r.rsplit("/", 1)[-1] for r in server.requests] == ["t10k-labels-idx1-ubyte.gz"]
    assert found["t10k-labels-idx1-ubyte.gz"].read_bytes() == blobs["t10k-labels-idx1-ubyte.gz"]


# ----------------------------------------------------------------------------- sharding


def test_training_shards_are_disjoint_and_cover_the_epoch():
    n = 103
    for epoch in range(3):
        shards = []
        for rank in range(2):
            s = EpochShards(n, shuffle=True, seed=5, rank=rank, world_size=2)
            s.set_epoch(epoch)
            shards.append(s.indices())
        assert len(shards[0]) == len(shards[1]) == 51
        both = torch.cat(shards)
        assert len(set(both.tolist())) == 102  # disjoint; one example left over, a different one per epoch
    first = EpochShards(n, shuffle=True, seed=5)
    second = EpochShards(n, shuffle=True, seed=5)
    second.set_epoch(1)
    assert not torch.equal(first.indices(), second.indices())


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_shards_count_every_example_once(world):
    n = 10_000
    seen = torch.cat([EpochShards(n, shuffle=False, rank=r, world_size=world).indices() for r in range(world)])
    assert torch.equal(seen, torch.arange(n))


def test_tensor_batches_over_two_ranks():
    x = torch.arange(50).float().unsqueeze(1)
    y = torch.arange(50)
    batches = [
        list(TensorBatches(x, y, 8, EpochShards(50, shuffle=True, seed=0, rank=r, world_size=2))) for r in range(2)
    ]
    assert [len(b) for b in batches] == [4, 4]  # 25 examples per rank, batches of 8: 3 full + 1
    seen = [int(v) for rank in batches for _, yb in rank for v in yb]
    assert len(seen) == 50 == len(set(seen))
    for rank in batches:
        for xb, yb in rank:
            assert torch.equal(xb.squeeze(1).long(), yb)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        TensorBatches(x, y, 0, EpochShards(50, shuffle=False))
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, world_size=2\), got 2"):
        EpochShards(50, shuffle=False, rank=2, world_size=2)


# ----------------------------------------------------------------------------- the real files


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


# ----------------------------------------------------------------------------- real DDP, 2 processes


@pytest.mark.slow
def test_ddp_two_processes_shard_training_and_count_eval_once(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    arrays = tiny_arrays(n_train=137, n_test=53)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        ids = np.arange(len(arrays[name]))
        arrays[name][:, 0, 0], arrays[name][:, 0, 1] = ids // 256, ids % 256  # example id in two pixels
    write_dataset(tmp_path / "data" / "FashionMNIST" / "raw", arrays)
    script = REPO / "tests" / "scripts" / "ddp_data_probe.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    n_train = 137 - 37
    for epoch in range(2):
        a, b = (set(r["seen"]["train"][epoch]) for r in ranks)
        assert len(a) == len(b) == n_train // 2 and not a & b  # disjoint, equal, covering all but one
    assert ranks[0]["seen"]["train"][0] != ranks[0]["seen"]["train"][1]  # a new permutation per epoch
    test_seen = ranks[0]["seen"]["test"] + ranks[1]["seen"]["test"]
    assert sorted(test_seen) == list(range(53))  # every test example exactly once over both ranks
    val_seen = ranks[0]["seen"]["val"] + ranks[1]["seen"]["val"]
    assert len(val_seen) == 2 * 37 and len(set(val_seen)) == 37  # 2 epochs, each validation example once per epoch
    for r in ranks:
        assert r["test_acc"] == pytest.approx(r["hand_test_acc"], abs=1e-6)
    assert ranks[0]["masks_hash"] == ranks[1]["masks_hash"] and ranks[0]["masks_sum"] == ranks[1]["masks_sum"]
