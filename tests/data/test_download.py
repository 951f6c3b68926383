"""Downloads (lth_lightning/data/download.py), against a local HTTP server: resume, md5, mirrors."""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import threading

import pytest
from idx_files import idx_bytes, tiny_arrays, tiny_datamodule_class, write_dataset

from lth_lightning import (
    DatasetFileError,
)
from lth_lightning.data.download import fetch_files

# ----------------------------------------------------------------------------- IDX reader


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
