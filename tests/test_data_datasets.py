"""HRFolder, named datasets, the catalog's checksums and the offline samples set."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srcompress.data import HRFolder, dataset_info, list_datasets, read_image, resolve_dataset
from srcompress.data.catalog import DATASETS
from srcompress.data.fetch import pixels_sha256
from srcompress.errors import DataError, UnknownNameError


def _write(folder: Path, name: str, h: int = 4, w: int = 6, value: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def test_hrfolder_lists_images_sorted(tmp_path: Path) -> None:
    _write(tmp_path, "b.png", value=20)
    _write(tmp_path, "a.BMP", h=5, w=3, value=10)
    _write(tmp_path, "c.tif", value=30)
    (tmp_path / "notes.txt").write_text("not an image")
    _write(tmp_path, ".hidden.png")
    (tmp_path / "sub").mkdir()
    folder = HRFolder(tmp_path)
    assert folder.names == ("a", "b", "c") and len(folder) == 3
    name, image = folder[0]
    assert name == "a" and image.shape == (3, 5, 3) and float(image.max()) == pytest.approx(10 / 255)
    assert folder.size(0) == (5, 3)
    assert [n for n, _ in folder[1:]] == ["b", "c"] and folder[-1][0] == "c"


def test_hrfolder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^no PNG/JPEG/BMP/TIFF images in .*empty; put the dataset's HR images in that folder$"):
        HRFolder(tmp_path / "empty")
    with pytest.raises(DataError, match=r"image folder not found: .*nowhere"):
        HRFolder(tmp_path / "nowhere")
    _write(tmp_path / "dup", "x.png")
    _write(tmp_path / "dup", "x.bmp")
    with pytest.raises(DataError, match=r"x\.bmp and x\.png in .* share the name 'x'"):
        HRFolder(tmp_path / "dup")


def test_named_dataset_from_data_root(data_root: Path) -> None:
    set5 = resolve_dataset("set5")  # case-insensitive; SRCOMPRESS_DATA points at the shared data
    assert set5.names == ("baby", "bird", "butterfly", "head", "woman") and set5.name == "Set5"
    set14 = resolve_dataset("Set14", data_root)
    assert len(set14) == 14
    bridge = read_image(set14.paths[set14.names.index("bridge")])
    assert bridge.shape == (3, 512, 512) and bool((bridge[0] == bridge[2]).all())
    assert len(resolve_dataset("T91", data_root)) == 91 and len(resolve_dataset("BSD200", data_root)) == 200


def test_unknown_name_lists_known_and_closest() -> None:
    with pytest.raises(UnknownNameError) as info:
        resolve_dataset("Set6")
    message = str(info.value)
    assert message.startswith("unknown dataset 'Set6'; did you mean 'Set5'? (available: ")
    for name in ("BSD100", "DIV2K", "General100", "Manga109", "Urban100", "samples"):
        assert name in message


def test_missing_root_and_not_downloadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data root .*nope does not exist; set SRCOMPRESS_DATA \(or the recipe's data\.root\)"):
        resolve_dataset("Set5", tmp_path / "nope")
    with pytest.raises(DataError) as info:
        resolve_dataset("Urban100", tmp_path)
    message = str(info.value)
    assert "cannot download it with a verified checksum" in message
    assert "https://github.com/jbhuang0604/SelfExSR" in message and f"{tmp_path / 'Urban100'}/" in message
    assert "\n" not in message
    with pytest.raises(DataError, match=r"dataset Set5 not found .* downloads are off"):
        resolve_dataset("Set5", tmp_path, download=False)


def test_catalog() -> None:
    assert list_datasets() == ["Set5", "Set14", "T91", "BSD200", "BSD100", "Urban100", "Manga109", "DIV2K", "General100", "samples"]
    for name in ("Set5", "Set14", "T91", "BSD200"):
        info = dataset_info(name)
        assert info.downloadable and len(info.files) == info.count
        assert all(f.url.startswith("https://raw.githubusercontent.com/") for f in info.files)
    for name in ("BSD100", "Urban100", "Manga109", "DIV2K", "General100"):
        assert not dataset_info(name).downloadable and dataset_info(name).source


def test_catalog_checksums_match_shared_copies(data_root: Path) -> None:
    """The per-file SHA-256s (and T91 pixel hashes) verify the copies the tests use."""
    for name in ("Set5", "Set14", "BSD200"):
        for item in DATASETS[name].files:
            assert hashlib.sha256((data_root / name / item.name).read_bytes()).hexdigest() == item.sha256, item.name
    for item in DATASETS["T91"].files:
        with Image.open(data_root / "T91" / item.name) as image:
            assert pixels_sha256(image) == item.pixels_sha256, item.name


def test_samples_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import skimage.data

    monkeypatch.setenv("SRCOMPRESS_DATA", str(tmp_path / "no-such-root"))  # samples need no root
    samples = resolve_dataset("samples")
    assert samples.names == ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
    name, image = samples[0]
    assert image.shape == (3, 512, 512)
    assert np.array_equal((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), skimage.data.astronaut())
    assert resolve_dataset("samples").root == samples.root  # built once, then reused
