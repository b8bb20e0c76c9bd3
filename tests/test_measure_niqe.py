"""NIQE: MATLAB's reference value, the per-set means in FACTS.md, and where the parameters come from."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from srcompress.data import imresize, read_image
from srcompress.download import DownloadError
from srcompress.errors import CheckpointError
from srcompress.measure import niqe, niqe_of_y
import srcompress.measure.niqe_metric as niqe_module

PARAMS = "niqe/niqe_pris_params.npz"



def test_baboon_matches_matlab(data_root: Path, weights_root: Path) -> None:
    """MATLAB R2021a ``niqe`` on the Y channel of Set14 baboon.png, no crop: 5.72957338."""
    value = niqe(read_image(data_root / "Set14" / "baboon.png"))
    assert value == pytest.approx(5.72957338, abs=1e-3)
    assert value == pytest.approx(5.72957338, abs=1e-5)  # in fact it agrees to ~2e-6


@pytest.mark.parametrize(
    ("dataset", "hr_mean", "bicubic_mean"),
    [("Set5", 5.437, 8.512), ("Set14", 4.922, 7.707)],
)
def test_set_means_match_facts(data_root: Path, weights_root: Path, dataset: str, hr_mean: float, bicubic_mean: float) -> None:
    """FACTS.md: x4, MATLAB-bicubic LR (uint8), Y, crop 4: mean NIQE of HR and of bicubic upscaling."""
    hr_values, bicubic_values = [], []
    for path in sorted((data_root / dataset).glob("*.png")):
        hr = read_image(path)
        hr = hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4]
        lr = torch.round(imresize(hr, 0.25).clamp(0, 1) * 255) / 255
        hr_values.append(niqe(hr, crop=4))
        bicubic_values.append(niqe(imresize(lr, 4).clamp(0, 1), crop=4))
    assert float(np.mean(hr_values)) == pytest.approx(hr_mean, abs=0.01)
    assert float(np.mean(bicubic_values)) == pytest.approx(bicubic_mean, abs=0.01)


def test_blurring_raises_niqe(weights_root: Path) -> None:
    from skimage import data as skdata

    img = torch.from_numpy(skdata.astronaut()[:192, :192].copy()).permute(2, 0, 1).float() / 255
    blurred = imresize(imresize(img, 0.25), 4).clamp(0, 1)
    assert niqe(blurred) > niqe(img) + 1.0


def test_too_small_and_bad_layout(weights_root: Path) -> None:
    with pytest.raises(ValueError, match=r"NIQE needs at least two whole 96x96 blocks \(got 90x200: 0 blocks\)"):
        niqe(torch.rand(3, 100, 210), crop=5)
    # one block (T91's t1.png is 176x197, 168x189 after crop 4): the covariance would be NaN and
    # numpy's pinv fail with "SVD did not converge"; two blocks score
    with pytest.raises(ValueError, match=r"two whole 96x96 blocks \(got 168x189: 1 block\); score images of at least 96x192"):
        niqe(torch.rand(3, 176, 197), crop=4)
    assert np.isfinite(niqe(torch.rand(3, 96, 192)))
    with pytest.raises(ValueError, match=r"NIQE: 0 of 2 blocks have finite features"):
        niqe_of_y(np.full((96, 192), 128.0))
    with pytest.raises(ValueError, match="niqe expects RGB"):
        niqe(torch.rand(1, 100, 100))
    with pytest.raises(ValueError, match="2-D grey image"):
        niqe_of_y(np.zeros((3, 100, 100)))


# ------------------------------------------------------------------ parameters: search and download
@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SRCOMPRESS_WEIGHTS, an empty cache: the parameters must be downloaded."""
    monkeypatch.delenv("SRCOMPRESS_WEIGHTS", raising=False)
    monkeypatch.setenv("SRCOMPRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights" / PARAMS


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_params_come_from_weights_root(weights_root: Path) -> None:
    params = niqe_module.load_niqe_params()
    assert params.source == (weights_root / PARAMS).resolve()
    assert params.mu.shape == (36,) and params.cov.shape == (36, 36) and params.window.shape == (7, 7)
    assert float(params.window.sum()) == pytest.approx(1.0, abs=1e-6)


def test_params_verified_download(
    weights_root: Path, no_weights: Path, local_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = local_server
    shutil.copy(weights_root / PARAMS, folder / "niqe_pris_params.npz")
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", f"{url}/niqe_pris_params.npz")
    params = niqe_module.load_niqe_params()
    assert no_weights.is_file() and params.source == no_weights.resolve()
    # the next call finds it in the cache (the server is not needed any more)
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", f"{url}/gone.npz")
    assert niqe_module.load_niqe_params().source == no_weights.resolve()


def test_params_download_checksum_mismatch(
    no_weights: Path, local_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = local_server
    (folder / "niqe_pris_params.npz").write_bytes(b"not the parameters")
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", f"{url}/niqe_pris_params.npz")
    with pytest.raises(DownloadError, match="SHA-256 mismatch .* Put niqe_pris_params.npz"):
        niqe_module.load_niqe_params()
    assert not no_weights.exists()


def test_params_offline_error_says_where_to_put_the_file(no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(niqe_module, "NIQE_PARAMS_URL", "http://127.0.0.1:9/niqe_pris_params.npz")
    with pytest.raises(DownloadError, match=r"cannot download .* \$SRCOMPRESS_WEIGHTS/niqe/"):
        niqe_module.load_niqe_params()


def test_corrupted_params_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "niqe_pris_params.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is not the published NIQE parameters"):
        niqe_module.load_niqe_params(bad)
