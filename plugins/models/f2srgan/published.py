"""The published F2SRGAN / KD student / Light F2SRGAN checkpoints and how they map onto our modules.

Upstream files (``shared/weights/SOURCE.md``) are ``{'model': state_dict, 'opti': ...}`` saved from
the authors' classes (``initial``, ``residual.N.block1.0...``, ``residual1..4`` for the students,
``upsampler.N``, ``final_conv``), with complex ``FourierUnit.complex_weight`` tensors in the
``fftshift`` channel order. :func:`convert_published_state` renames the keys to ours and turns each
complex weight into our real ``cat([real, imag])`` layout; a state dict already in our naming is
returned unchanged. The Light F2SRGAN file also pickles its whole module under ``'deploy'``: it is
read with :func:`srcompress.weights.load_checkpoint_file` (restricted unpickler, no code from the
file runs) and only its ``'model'`` state dict is used; its fake-quant observer buffers
(``quantAct.*``) are dropped and the forward is float32, as released: every pickled quant module
has ``full_precision_flag=False`` (fake quantization off; the authors then exported FP16).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.entries import WeightsEntry
from srcompress.errors import CheckpointError
from srcompress.plugins.models.f2srgan.fourier import complex_weight_to_real_layout
from srcompress.plugins.models.f2srgan.generator import LIGHT_INNER_WIDTHS, F2SRGANOptions
from srcompress.weights import extract_state_dict, load_checkpoint_file, load_state_into

__all__ = [
    "F2SRGAN_WEIGHTS",
    "LIGHT_F2SRGAN_WEIGHTS",
    "STUDENT_WEIGHTS",
    "convert_published_state",
    "load_published",
    "options_from_state_dict",
]

_BIBOM = "https://github.com/bibom108/F2SRGAN/raw/5c3105b0a24cdd60e075a1499df2a4ff94fad8f0/pretrain_weight/"
_LIGHT = "https://github.com/khanhhungvu1508/Light-F2SRGAN/raw/5e57761aac712230ab96563737576a42648692e2/pretrain_weight/"

F2SRGAN_WEIGHTS = (
    WeightsEntry(
        tag="official", scale=2, filename="F2SRGAN_2x.pt", url=_BIBOM + "F2SRGAN_2x.pt",
        sha256="1197fb6c37680574b017a6909a7b8f1158687c162fa74c630f90e62b8dd34418",
        description="F2SRGAN x2 of the authors (184,889 params; one upsampling stage).",
    ),
    WeightsEntry(
        tag="official", scale=4, filename="F2SRGAN_4x.pt", url=_BIBOM + "F2SRGAN_4x.pt",
        sha256="0119b8996e7faf407a40fc19beaa9250b196393b6ed22166127200d350556708",
        description="F2SRGAN x4 of the authors (202,233 params).",
    ),
)
STUDENT_WEIGHTS = (
    WeightsEntry(
        tag="official", scale=4, filename="F2SRGAN_4x_student.pt", url=_LIGHT + "F2SRGAN_4x_student.pt",
        sha256="293694f220a3147784fe9483c8ddbc8bcc6e2c7a3c3c2d2f0df839eda54aae50",
        options={"released_forward": True},
        description="Released KD student (8 blocks, no FFC, 113,145 params; released forward: blocks 5-8 never run).",
    ),
)
LIGHT_F2SRGAN_WEIGHTS = (
    WeightsEntry(
        tag="official", scale=4, filename="LightF2SRGAN_x4.pt", url=_LIGHT + "LightF2SRGAN_x4.pt",
        sha256="27bce592d2608fb61a133d61fb889aa741dc66ec982a34679da28c4f61e377e9",
        options={"inner_widths": LIGHT_INNER_WIDTHS, "released_forward": True},
        description="Released Light F2SRGAN (executed blocks pruned to inner width 1; ~39 k params used), run in fp32.",
    ),
)

_SEP = {"0": "depthwise", "1": "pointwise"}
_RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^initial\.0\.([01])\.(.+)$"), lambda m, b: f"head.{_SEP[m[1]]}.{m[2]}"),
    (re.compile(r"^final_conv\.([01])\.(.+)$"), lambda m, b: f"tail.{_SEP[m[1]]}.{m[2]}"),
    (re.compile(r"^(sub_mean|add_mean)\.(weight|bias)$"), lambda m, b: m[0]),
    (re.compile(r"^upsampler\.(\d+)\.([01])\.(.+)$"), lambda m, b: f"upsampler.{int(m[1]) // 3}.conv.{_SEP[m[2]]}.{m[3]}"),
    (re.compile(r"^upsampler\.(\d+)\.weight$"), lambda m, b: f"upsampler.{int(m[1]) // 3}.act.weight"),
    (re.compile(r"^(residual\d?\.\d+)\.block1\.1\.weight$"), lambda m, b: f"{b(m[1])}.act.weight"),
    (re.compile(r"^(residual\d?\.\d+)\.block([12])\.0\.([01])\.(.+)$"),
     lambda m, b: f"{b(m[1])}.conv{m[2]}.{_SEP[m[3]]}.{m[4]}"),
    (re.compile(r"^(residual\d?\.\d+)\.block1\.0\.(conv[lg]2[lg])\.([01])\.(.+)$"),
     lambda m, b: f"{b(m[1])}.conv1.{m[2]}.{_SEP[m[3]]}.{m[4]}"),
    (re.compile(r"^(residual\d?\.\d+)\.block1\.0\.convg2g\.(conv[12])\.(?:0\.)?([01])\.(.+)$"),
     lambda m, b: f"{b(m[1])}.conv1.convg2g.{m[2]}.{_SEP[m[3]]}.{m[4]}"),
    (re.compile(r"^(residual\d?\.\d+)\.block1\.0\.convg2g\.(fu|lfu)\.complex_weight$"),
     lambda m, b: f"{b(m[1])}.conv1.convg2g.{m[2]}.conv.weight"),
]
_DROPPED = re.compile(r"\.quantAct\.(x_min|x_max|beta|beta_t)$")


def _is_published(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("initial.", "final_conv.")) for k in state)


def _block_namer(state: Mapping[str, torch.Tensor]) -> Any:
    """Map ``residual.N`` / ``residualG.N`` (students: 4 groups of equal size) to ``body.K``."""
    groups: dict[int, int] = {}
    for key in state:
        m = re.match(r"^residual(\d)\.(\d+)\.", key)
        if m:
            groups[int(m[1])] = max(groups.get(int(m[1]), 0), int(m[2]) + 1)
    size = max(groups.values(), default=0)

    def name(prefix: str) -> str:
        group, index = prefix.split(".")
        if group == "residual":
            return f"body.{index}"
        return f"body.{(int(group[len('residual'):]) - 1) * size + int(index)}"

    return name


def convert_published_state(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str] = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename an upstream F2SRGAN-family state dict to our modules; convert complex Fourier weights.

    A state dict already in our naming (``head.``/``body.``/``tail.``) is returned unchanged.

    :raises CheckpointError: naming ``path`` and the first keys no rule knows.
    """
    if not _is_published(state):
        return dict(state)
    block = _block_namer(state)
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if _DROPPED.search(key):
            continue
        for pattern, rename in _RULES:
            match = pattern.match(key)
            if match:
                new = rename(match, block)
                out[new] = complex_weight_to_real_layout(value) if key.endswith("complex_weight") else value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys of no known F2SRGAN layout: {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}")
    return out


def options_from_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[F2SRGANOptions, int]:
    """``(options, scale)`` of the generator a state dict (ours or published) was saved from.

    Everything is read from tensor shapes: blocks, width, FFC blocks and ratio, local Fourier units,
    per-block inner widths, upsampler stages, widths and slopes. ``released_forward`` is behaviour, not
    shape: it is False here (set it from the checkpoint's provenance).
    """
    ours = convert_published_state(state)
    width = ours["head.pointwise.weight"].shape[0]
    indices = sorted({int(m[1]) for k in ours if (m := re.match(r"^body\.(\d+)\.", k))})
    blocks = (indices[-1] + 1) if indices else 0
    ffc = tuple(i for i in indices if f"body.{i}.conv1.convl2l.depthwise.weight" in ours)
    inner = tuple(ours[f"body.{i}.act.weight"].shape[0] for i in range(blocks))
    stages = sorted({int(m[1]) for k in ours if (m := re.match(r"^upsampler\.(\d+)\.", k))})
    ups = tuple(ours[f"upsampler.{s}.conv.pointwise.weight"].shape[0] // 4 for s in stages)
    shared = bool(stages) and all(ours[f"upsampler.{s}.act.weight"].numel() == 1 < w for s, w in zip(stages, ups))
    ratio = 0.5
    if ffc:
        global_in = ours[f"body.{ffc[0]}.conv1.convg2l.depthwise.weight"].shape[0]
        ratio = global_in / width
    lfu = not ffc or f"body.{ffc[0]}.conv1.convg2g.lfu.conv.weight" in ours
    options = F2SRGANOptions(
        blocks=blocks, width=width, ffc_blocks=ffc, ffc_ratio=ratio, local_fourier_unit=lfu,
        inner_widths=inner if any(w != width for w in inner) else (),
        upsampler_widths=ups if any(w != width for w in ups) else (),
        upsampler_slopes="shared" if shared else "per_channel",
    )
    return options, 2 ** len(stages)


def load_published(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load an F2SRGAN-family checkpoint file (published or ours) into ``model``, strictly.

    :raises CheckpointError: unreadable file, no state dict, or one that does not fit ``model``
        (the message lists missing/unexpected keys and mismatching shapes).
    """
    path = Path(path)
    state = convert_published_state(extract_state_dict(load_checkpoint_file(path), path), path)
    load_state_into(model, state, path)
