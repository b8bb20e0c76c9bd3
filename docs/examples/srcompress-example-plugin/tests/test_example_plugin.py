"""The example plugin passes srcompress's conformance suite and works in a recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srcompress.engine import run
from srcompress.testing import reference_model

pytestmark = pytest.mark.srcompress_plugin("example")  # the entry-point name in pyproject.toml


def test_models_conform(srcompress_check, srcompress_model):
    report = srcompress_check.model(srcompress_model)
    assert [line.split(":")[0] for line in report.passed if "forward" in line] == ["x2", "x3", "x4"]


def test_techniques_conform(srcompress_check, srcompress_technique):
    report = srcompress_check.technique(srcompress_technique, overrides={"sigma": 1.0})
    assert "checkpoint saves and reloads" in report.passed[-1]


def test_clip_weights_bounds_every_conv(srcompress_registry):
    entry = srcompress_registry.get_technique("clip_weights")
    model = reference_model(2)
    convs = (model.head, model.body1, model.body2, model.tail)
    bounds = [(c.weight.mean() - c.weight.std(), c.weight.mean() + c.weight.std()) for c in convs]
    notes: list[str] = []
    ctx = type("Ctx", (), {"note": lambda self, text: notes.append(text)})()
    entry.apply(model, entry.config_cls(sigma=1.0), ctx)
    for conv, (lo, hi) in zip(convs, bounds):
        assert lo - 1e-6 <= conv.weight.min() and conv.weight.max() <= hi + 1e-6
    assert notes[0].startswith("clipped ") and notes[0].endswith(" of 2232 conv weights beyond 1.0 std")


def test_max_abs_importance_is_registered_and_prunes(srcompress_registry, tmp_path: Path):
    from srcompress.plugins.techniques.pruning import get_importance

    assert get_importance(srcompress_registry, "max_abs").plugin == "example"
    result = run(
        {
            "version": 1,
            "name": "example",
            "model": {"name": "example_sr", "scale": 2, "width": 16},
            "data": {"train": ["samples"], "eval": ["samples"], "eval_limit": 1, "patch": 32, "batch": 2},
            "eval": {"metrics": ["psnr"], "lr_size": [16, 16], "latency_runs": 0, "crops": 0},
            "stages": [
                {"type": "clip_weights", "sigma": 3.0},
                {"type": "prune", "importance": "max_abs", "ratio": 0.5},
            ],
        },
        run_dir=tmp_path / "run",
        registry=srcompress_registry,
        quiet=True,
    )
    widths = [result.model.body[i].conv1.out_channels for i in range(2)]
    assert widths == [8, 8]  # residual inner widths halved, trunk untouched
    assert result.model.head.out_channels == 16
    assert result.model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
