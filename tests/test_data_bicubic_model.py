"""The registered ``bicubic`` model: no parameters, MATLAB bicubic, the published baseline."""

from __future__ import annotations

import math
from pathlib import Path

import torch

import srcompress
from srcompress.data import bicubic_downscale, imresize, modcrop, read_image


def test_registered_through_entry_point() -> None:
    entry = srcompress.get_model("bicubic")
    assert entry.plugin == "bicubic" and entry.scales == (2, 3, 4)
    model = entry.build(3, entry.options_cls())
    assert sum(p.numel() for p in model.parameters()) == 0
    assert entry.hints(model) == srcompress.ModelHints()
    x = torch.rand(2, 3, 10, 7)
    out = model(x)
    assert out.shape == (2, 3, 30, 21) and out.dtype == torch.float32
    assert torch.equal(out, imresize(x, 3.0))


def test_set5_x4_psnr_y(data_root: Path) -> None:
    model = srcompress.get_model("bicubic").build(4, srcompress.NoOptions())
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)[:, None, None]
    values = []
    for path in sorted((data_root / "Set5").glob("*.png")):
        hr = modcrop(read_image(path), 4)
        sr = (model(bicubic_downscale(hr, 4)[None])[0].clamp(0, 1) * 255).round() / 255
        diff = ((sr.double() - hr.double()) * weights).sum(0)[4:-4, 4:-4]  # Y(sr) - Y(hr), BT.601
        values.append(10 * math.log10(255**2 / float((diff**2).mean())))
    assert abs(sum(values) / len(values) - 28.4314) < 1e-3
