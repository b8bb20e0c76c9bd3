"""Verified, atomic dataset downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srcompress.data import catalog, read_image, resolve_dataset
from srcompress.data.catalog import DatasetInfo
from srcompress.data.fetch import RemoteArchive, RemoteFile, install_dataset, pixels_sha256
from srcompress.download import DownloadError
from srcompress.errors import DataError

RNG = np.random.default_rng(0)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, base URL) of a local HTTP server serving that folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _pngs(n: int = 2) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out[f"img{i}.png"] = buffer.getvalue()
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(files: dict[str, bytes], prefix: str = "Tiny/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return buffer.getvalue()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _assert_clean(parent: Path, target: Path) -> None:
    """No dataset folder and no temporary left behind."""
    assert not target.exists()
    assert [p.name for p in parent.iterdir()] == [] if parent.exists() else True


def test_zip_archive_installed(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    files = _pngs()
    (folder / "tiny.zip").write_bytes(data := _zip(files))
    target = tmp_path / "cache" / "Tiny"
    install_dataset(target, archive=RemoteArchive(url=f"{base}/tiny.zip", sha256=_sha(data), subdir="Tiny"), offline_hint="x")
    assert sorted(p.name for p in target.iterdir()) == ["img0.png", "img1.png"]
    assert (target / "img1.png").read_bytes() == files["img1.png"]
    assert [p.name for p in target.parent.iterdir()] == ["Tiny"]  # no temporary left


def test_tar_archive_installed(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    files = _pngs(3)
    (folder / "tiny.tar.gz").write_bytes(data := _tar_gz(files))
    target = tmp_path / "cache" / "Tiny"
    install_dataset(target, archive=RemoteArchive(url=f"{base}/tiny.tar.gz", sha256=_sha(data)), offline_hint="x")
    assert sorted(p.name for p in target.iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_checksum_mismatch_leaves_nothing(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    (folder / "tiny.zip").write_bytes(_zip(_pngs()))
    target = tmp_path / "cache" / "Tiny"
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch for http://127\.0\.0\.1:\d+/tiny\.zip.*put it in X"):
        install_dataset(target, archive=RemoteArchive(url=f"{base}/tiny.zip", sha256="0" * 64), offline_hint="put it in X")
    _assert_clean(target.parent, target)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_corrupted_archive_leaves_nothing(served: tuple[Path, str], tmp_path: Path, kind: str) -> None:
    folder, base = served
    good = _zip(_pngs()) if kind == "zip" else _tar_gz(_pngs())
    # Damage the compressed payload but keep the structure that identifies the archive type.
    bad = bytearray(good)
    start = 60 if kind == "zip" else 20
    bad[start : start + 40] = b"\xff" * 40
    (folder / "bad.bin").write_bytes(bytes(bad))
    target = tmp_path / "cache" / "Tiny"
    with pytest.raises(DataError, match=r"archive from http://127\.0\.0\.1:\d+/bad\.bin is corrupted.*nothing was installed"):
        install_dataset(target, archive=RemoteArchive(url=f"{base}/bad.bin", sha256=_sha(bytes(bad)), subdir="Tiny"), offline_hint="x")
    _assert_clean(target.parent, target)


def test_unsafe_member_refused(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    (folder / "evil.zip").write_bytes(data := _zip({"../../evil.png": _pngs(1)["img0.png"]}, prefix=""))
    target = tmp_path / "cache" / "Tiny"
    with pytest.raises(DataError, match=r"'\.\./\.\./evil\.png' would be written outside"):
        install_dataset(target, archive=RemoteArchive(url=f"{base}/evil.zip", sha256=_sha(data)), offline_hint="x")
    _assert_clean(target.parent, target)
    assert not list(tmp_path.rglob("evil.png"))


def test_per_file_downloads_all_or_nothing(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    files = _pngs(3)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    entries = [RemoteFile(url=f"{base}/{name}", name=name, sha256=_sha(data)) for name, data in files.items()]
    target = tmp_path / "cache" / "Tiny"
    broken = [*entries[:2], RemoteFile(url=f"{base}/img2.png", name="img2.png", sha256="1" * 64)]
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch for .*/img2\.png"):
        install_dataset(target, files=broken, offline_hint="x")
    _assert_clean(target.parent, target)  # the two good files were not kept either
    install_dataset(target, files=entries, offline_hint="x")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files


def test_pixel_verified_bmp_saved_as_png(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, base = served
    pixels = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "t1.bmp")
    digest = pixels_sha256(Image.fromarray(pixels))
    target = tmp_path / "cache" / "T"
    install_dataset(target, files=[RemoteFile(url=f"{base}/t1.bmp", name="t1.png", pixels_sha256=digest)], offline_hint="x")
    assert np.array_equal(np.asarray(Image.open(target / "t1.png")), pixels)
    other = tmp_path / "cache" / "U"
    with pytest.raises(DownloadError, match=r"pixel SHA-256 mismatch for .*/t1\.bmp"):
        install_dataset(other, files=[RemoteFile(url=f"{base}/t1.bmp", name="t1.png", pixels_sha256="2" * 64)], offline_hint="x")
    assert not other.exists()


def test_offline_error_carries_hint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = tmp_path / "cache" / "Tiny"
    with pytest.raises(DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/a\.png .*put a\.png in /data/Tiny/"):
        install_dataset(target, files=[RemoteFile(url=f"http://127.0.0.1:{port}/a.png", name="a.png", sha256="3" * 64)], offline_hint="put a.png in /data/Tiny/")
    _assert_clean(target.parent, target)


def test_resolve_dataset_downloads_into_cache_once(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, base = served
    files = _pngs(2)
    (folder / "tiny.zip").write_bytes(data := _zip(files))
    info = DatasetInfo(
        name="Tiny", description="test", source=f"{base}/tiny.zip", count=2,
        archive=RemoteArchive(url=f"{base}/tiny.zip", sha256=_sha(data), subdir="Tiny"),
    )
    monkeypatch.setitem(catalog.DATASETS, "Tiny", info)
    monkeypatch.setenv("SRCOMPRESS_CACHE", str(tmp_path / "cache"))
    empty_root = tmp_path / "root"
    empty_root.mkdir()
    with pytest.raises(DataError, match=r"dataset Tiny not found .* downloads are off: get Tiny from .* put its HR images in .*root/Tiny/"):
        resolve_dataset("tiny", empty_root, download=False)
    first = resolve_dataset("tiny", empty_root)
    assert first.root == tmp_path / "cache" / "data" / "Tiny" and first.names == ("img0", "img1")
    (folder / "tiny.zip").unlink()  # the second call must not touch the network
    second = resolve_dataset("Tiny", empty_root)
    assert second.root == first.root
    name, image = second[1]
    assert name == "img1" and image.shape == (3, 8, 6)
    assert np.array_equal((read_image(first.paths[0]).permute(1, 2, 0).numpy() * 255).round(), np.asarray(Image.open(io.BytesIO(files["img0.png"]))))
