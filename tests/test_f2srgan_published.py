"""Acceptance: the published F2SRGAN-family checkpoints reproduce the independent reference numbers.

Protocol: HR modcropped to the scale, LR by MATLAB-compatible bicubic (8-bit), SR clamped and rounded
to 8 bits, PSNR/SSIM on Y (BT.601), shave = scale (``srcompress.measure.evaluate``). Reference
numbers: issue 4 (independent implementation). Tolerance: 0.02 dB PSNR, 0.0005 SSIM.
Set5 runs in the default suite (5-15 s each, one thread); Set14 is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import srcompress.plugins.models.f2srgan as f2
from srcompress.measure.evaluate import evaluate
from srcompress.weights import build_pretrained

ENTRIES = {e.name: e for e in f2.srcompress_models()}

# (model, scale, dataset) -> (PSNR-Y dB, SSIM-Y)
REFERENCE = {
    ("f2srgan", 4, "Set5"): (28.0640, 0.79959),
    ("f2srgan", 4, "Set14"): (25.8922, 0.70374),
    ("f2srgan", 2, "Set5"): (34.7302, 0.93997),
    ("f2srgan", 2, "Set14"): (31.2297, 0.89027),
    ("f2srgan_student", 4, "Set5"): (27.5872, 0.78804),
    ("f2srgan_student", 4, "Set14"): (25.5688, 0.70050),
    ("light_f2srgan", 4, "Set5"): (26.6852, 0.75904),
    ("light_f2srgan", 4, "Set14"): (24.7362, 0.67109),
}


def _cases() -> list:
    return [
        pytest.param(*key, marks=[pytest.mark.slow] if key[2] == "Set14" else [], id=f"{key[0]}-x{key[1]}-{key[2]}")
        for key in REFERENCE
    ]


@pytest.mark.parametrize(("name", "scale", "dataset"), _cases())
def test_published_checkpoint_reproduces_reference(name: str, scale: int, dataset: str, weights_root: Path, data_root: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_f2srgan._one_thread: 2 threads spin-wait on the shared machine
    try:
        model = build_pretrained(ENTRIES[name], scale, "official")
        result = evaluate(model, [dataset], scale, root=data_root)
    finally:
        torch.set_num_threads(threads)
    psnr, ssim = REFERENCE[(name, scale, dataset)]
    assert result.mean(dataset, "psnr") == pytest.approx(psnr, abs=0.02)
    assert result.mean(dataset, "ssim") == pytest.approx(ssim, abs=5e-4)
