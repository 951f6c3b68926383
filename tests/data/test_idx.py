"""The IDX reader (lth_lightning/data/idx.py): gzip and raw files, labels, malformed files refused."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from idx_files import idx_bytes, write_idx

from lth_lightning import (
    IDXFormatError,
    read_idx,
)

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
