"""PatchDataset: aligned crops, exact LR, dihedral augmentation, determinism across workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from srcompress.data import PatchDataset, bicubic_downscale, read_image
from srcompress.errors import DataError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "hr"
    root.mkdir()
    for name, (h, w) in {"a": (37, 50), "b": (64, 41), "c": (30, 30)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{name}.png")
    return root


def _dihedral_variants(t: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for base in (t, t.transpose(-2, -1)):
        out += [base, base.flip(-1), base.flip(-2), base.flip(-1).flip(-2)]
    return out


def test_shapes_and_lr_equals_whole_image_lr(folder: Path) -> None:
    data = PatchDataset([folder], scale=4, patch=24, augment=False, length=12, seed=3)
    assert len(data) == 12
    cached = PatchDataset([str(folder)], scale=4, patch=24, augment=False, length=12, seed=3, cache_lr=True)
    for i in range(12):
        lr, hr = data[i]
        assert lr.shape == (3, 6, 6) and hr.shape == (3, 24, 24) and lr.dtype == hr.dtype == torch.float32
        image = read_image(data.paths[i % 3])
        whole_lr = bicubic_downscale(image, 4)
        # find the crop position and check the LR is the matching window of the whole image's LR
        h, w = image.shape[1] // 4 * 4, image.shape[2] // 4 * 4
        hits = [(t, l) for t in range(0, h - 23, 4) for l in range(0, w - 23, 4) if torch.equal(image[:, t : t + 24, l : l + 24], hr)]
        assert len(hits) == 1
        top, left = hits[0]
        assert torch.equal(lr, whole_lr[:, top // 4 : top // 4 + 6, left // 4 : left // 4 + 6])
        assert torch.equal(cached[i][0], lr)


def test_augmentation_is_a_shared_dihedral_transform(folder: Path) -> None:
    plain = PatchDataset([folder], scale=2, patch=16, augment=False, length=40)
    aug = PatchDataset([folder], scale=2, patch=16, augment=True, length=40)
    seen = set()
    for i in range(40):
        (lr0, hr0), (lr1, hr1) = plain[i], aug[i]
        matches = [k for k, v in enumerate(_dihedral_variants(hr0)) if torch.equal(v, hr1)]
        assert matches and torch.equal(_dihedral_variants(lr0)[matches[0]], lr1)
        seen.add(matches[0])
    assert len(seen) >= 6  # the 8 transforms all occur (40 draws)


def test_deterministic_under_seed_epoch_and_workers(folder: Path) -> None:
    data = PatchDataset([folder], scale=2, patch=16, length=8, seed=5)
    again = PatchDataset([folder], scale=2, patch=16, length=8, seed=5)
    assert all(torch.equal(data[i][1], again[i][1]) for i in range(8))
    other_seed = PatchDataset([folder], scale=2, patch=16, length=8, seed=6)
    assert not all(torch.equal(data[i][1], other_seed[i][1]) for i in range(8))
    first = torch.stack([data[i][1] for i in range(8)])
    data.set_epoch(1)
    assert not torch.equal(torch.stack([data[i][1] for i in range(8)]), first)
    data.set_epoch(0)
    serial = list(DataLoader(data, batch_size=4, num_workers=0))
    parallel = list(DataLoader(data, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == 2
    for (lr_a, hr_a), (lr_b, hr_b) in zip(serial, parallel):
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)
    assert torch.equal(torch.cat([hr for _, hr in serial]), first)


def test_small_images_skipped_with_one_warning(folder: Path) -> None:
    with pytest.warns(UserWarning, match=r"skipping 2 image\(s\) smaller than the 40px patch: hr/a\.png \(37x50\), hr/c\.png \(30x30\)"):
        data = PatchDataset([folder], scale=4, patch=40)
    assert data.names == ["hr/b"] and len(data) == 1
    with pytest.raises(DataError, match=r"no image in .*hr is at least 80x80 pixels; use a smaller patch size"):
        PatchDataset([folder], scale=4, patch=80)


def test_bad_patch_and_index(folder: Path) -> None:
    with pytest.raises(DataError, match=r"patch 30 is not a positive multiple of scale 4; use e\.g\. 28"):
        PatchDataset([folder], scale=4, patch=30)
    data = PatchDataset([folder], scale=2, patch=8, length=5)
    with pytest.raises(IndexError, match="index 5 out of range"):
        data[5]


def test_named_source(data_root: Path) -> None:
    data = PatchDataset(["Set5"], scale=4, patch=32, root=data_root, length=10)
    assert data.names[:2] == ["Set5/baby", "Set5/bird"] and len(data) == 10
    lr, hr = data[7]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32)
    assert float(hr.min()) >= 0 and float(hr.max()) <= 1
    assert torch.equal((lr * 255).round() / 255, lr)  # quantized like the reference LR files


def test_sources_names_and_folders(folder: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.chdir(folder.parent)
    by_bare_folder_name = PatchDataset(["hr"], scale=2, patch=16)  # not a dataset name: the folder
    assert by_bare_folder_name.names == ["hr/a", "hr/b", "hr/c"]
    (folder.parent / "Set5").mkdir()  # a dataset name stays the dataset, even with such a folder here
    mixed = PatchDataset(["Set5", folder], scale=2, patch=16, root=data_root)
    assert len(mixed) == 8 and mixed.names[0] == "Set5/baby" and mixed.names[-1] == "hr/c"
