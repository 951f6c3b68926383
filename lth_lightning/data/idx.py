"""Reading IDX files (the MNIST family's format), gzip-compressed or raw, with full validation."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["IDXFormatError", "read_idx"]

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXFormatError(ValueError):
    """An IDX file is truncated, corrupted or not what was expected."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise IDXFormatError(f"Cannot read IDX file {path}: {err} (the file is corrupted or truncated).") from err


def read_idx(
    path: str | Path, *, magic: int | None = None, shape: tuple[int | None, ...] | None = None
) -> torch.Tensor:
    """Read an IDX file into a tensor, validating its header against its contents.

    Args:
        path: File to read; a name ending in ``.gz`` is decompressed.
        magic: Expected magic number (2051 for images, 2049 for labels), if any.
        shape: Expected shape, ``None`` entries matching any length.

    Returns:
        A tensor of the file's dtype and shape (``uint8`` for MNIST files).

    Raises:
        FileNotFoundError: If the file does not exist.
        IDXFormatError: If the magic number, the dimensions or the length of the data is wrong,
            or the file cannot be decompressed. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist.")
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"IDX file {path} is truncated: {len(data)} bytes, no complete header.")
    found = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        raise IDXFormatError(f"IDX file {path} has an invalid magic number {found} (0x{found:08x}).")
    if magic is not None and found != magic:
        raise IDXFormatError(f"IDX file {path} has magic number {found}, expected {magic}.")
    ndim, dtype = data[3], _DTYPES[data[2]]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"IDX file {path} is truncated inside its header ({len(data)} of {header} bytes).")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual_bytes = len(data) - header
    if actual_bytes < expected_bytes:
        raise IDXFormatError(
            f"IDX file {path} is truncated: its header declares shape {dims} ({expected_bytes} bytes of data), "
            f"but only {actual_bytes} bytes follow."
        )
    if actual_bytes > expected_bytes:
        raise IDXFormatError(
            f"IDX file {path} has {actual_bytes - expected_bytes} bytes beyond the shape {dims} its header declares."
        )
    if shape is not None and (
        len(shape) != len(dims) or any(s is not None and s != d for s, d in zip(shape, dims, strict=True))
    ):
        want = tuple("*" if s is None else s for s in shape)
        raise IDXFormatError(f"IDX file {path} has shape {dims}, expected {want}.")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))
