"""Atomic file writes and safe loading: a kill at any moment leaves either the old file or the new one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "create_temporary",
    "fresh_folder",
    "load_tensors",
    "save_tensors",
]


def create_temporary(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file beside ``path`` (``.<name>.<random><suffix>``), open for writing, with the permissions
    of any new file: ``0o666`` less the process's umask (``mkstemp`` would give ``0o600``)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def _atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into: a temporary in the same folder, fsynced and renamed
    over ``path`` when the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then rename.

    The file gets the permissions of any new file (``0o666`` less the process's umask), so run
    folders on a shared filesystem stay readable to colleagues as the umask allows.
    """
    with _atomic_file(path) as fh:
        fh.write(data)


def fresh_folder(parent: str | Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with the permissions of any new folder (umask applied)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            folder.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return folder


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(obj: Any, path: str | Path) -> None:
    """Atomically ``torch.save`` an object made of tensors, containers and plain values.

    It is written straight into the temporary file, with no copy of it in memory (a round's state
    holds a whole snapshot of the model).
    """
    with _atomic_file(path) as fh:
        torch.save(obj, fh)


def load_tensors(path: str | Path) -> Any:
    """Load a file written by :func:`save_tensors` with ``weights_only=True``: no code runs."""
    return torch.load(path, map_location="cpu", weights_only=True)
