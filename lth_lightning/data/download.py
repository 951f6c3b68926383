"""Finding, verifying and downloading dataset files: md5-checked, atomic, never partial."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lth_lightning.io import create_temporary

__all__ = ["DatasetFileError", "file_md5", "fetch_files"]

_CHUNK = 1 << 20


class DatasetFileError(RuntimeError):
    """A dataset file is missing, has the wrong checksum, or could not be downloaded."""


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_one(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``target`` atomically, or raise; leaves no partial file behind."""
    fd, tmp = create_temporary(target, suffix=".part")  # readable as the umask allows, like any new file
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "lth-lightning"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise DatasetFileError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_files(
    raw_dir: str | Path,
    resources: Sequence[tuple[str, str]],
    mirrors: Sequence[str],
    *,
    download: bool,
    dataset: str,
    timeout: float = 30.0,
) -> dict[str, Path]:
    """Locate each ``(filename.gz, md5)`` in ``raw_dir``, downloading what is missing if allowed.

    A ``.gz`` file present with the right md5 is used as is (never downloaded again). An
    uncompressed file of the same name without ``.gz`` is used as is too (its contents are
    validated when read). A download goes to a temporary file in ``raw_dir``, is checked
    against the md5, and only then renamed into place.

    Args:
        raw_dir: Folder holding the files (torchvision's ``<root>/<Name>/raw``).
        resources: ``(filename, md5)`` pairs; filenames end in ``.gz``.
        mirrors: Base URLs tried in order.
        download: Whether missing or corrupt files may be downloaded.
        dataset: Dataset name for messages.
        timeout: Seconds to wait for a mirror to answer.

    Returns:
        The path to read for each filename.

    Raises:
        DatasetFileError: If a file is missing (and ``download`` is False), has the wrong md5
            (and ``download`` is False), or no mirror delivered it intact. The message names the
            file, where it was looked for, and how to place it by hand.
    """
    raw_dir = Path(raw_dir)
    found: dict[str, Path] = {}
    for filename, md5 in resources:
        gz = raw_dir / filename
        plain = raw_dir / filename.removesuffix(".gz")
        manual = (
            f"To place it by hand, download {filename} (md5 {md5}) from one of "
            f"{', '.join(mirrors) or '(no mirror configured)'} and put it at {gz}."
        )
        if gz.is_file():
            actual = file_md5(gz)
            if actual == md5:
                found[filename] = gz
                continue
            if not download:
                raise DatasetFileError(
                    f"{dataset} file {gz} has md5 {actual}, expected {md5}: it is corrupted or truncated. "
                    f"Delete it and pass download=True, or replace it. {manual}"
                )
        elif plain.is_file():
            found[filename] = plain
            continue
        elif not download:
            raise DatasetFileError(
                f"{dataset} file {filename} not found in {raw_dir} (looked for {gz.name} and {plain.name}). "
                f"Pass download=True (--data.download true) to fetch it. {manual}"
            )
        raw_dir.mkdir(parents=True, exist_ok=True)
        failures = []
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{filename}"
            try:
                _download_one(url, gz, md5, timeout)
            except (OSError, urllib.error.URLError, DatasetFileError, ValueError) as err:
                failures.append(f"{url}: {err}")
                continue
            found[filename] = gz
            break
        else:
            tried = "; ".join(failures) or "no mirror configured"
            raise DatasetFileError(
                f"Could not download {dataset} file {filename} into {raw_dir} ({tried}). Nothing was written. {manual}"
            )
    return found
