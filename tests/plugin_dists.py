"""Build real (unpacked) plugin distributions in a folder that importlib.metadata scans."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write ``<module>.py`` files and a ``<dist>-0.1.dist-info`` with an ``entry_points.txt``.

    Put ``root`` on sys.path (or PYTHONPATH) and ``importlib.metadata`` finds the distribution, just
    as it finds one installed by pip.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[srcompress.plugins]\n{lines}\n")
    return root


THIRD_PARTY_PLUGIN = '''
"""A third-party srcompress plugin: one model and one technique."""
from attrs import define
import torch
from torch import nn
from srcompress import ModelEntry, ModelHints, TechniqueEntry, hookimpl
from srcompress.config import in_range, option


@define(frozen=True, kw_only=True)
class TinyOptions:
    width: int = option(8, help="Feature channels.", validator=in_range(1, 64))


class TinySR(nn.Module):
    """conv -> ReLU -> conv -> PixelShuffle, plus a bilinear skip; [0, 1] in and out."""

    def __init__(self, scale: int, width: int) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = nn.functional.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return skip + self.shuffle(self.tail(torch.relu(self.head(x))))


@define(frozen=True, kw_only=True)
class ScaleConfig:
    factor: float = option(0.5, help="Multiply the last conv's weights by this.", validator=in_range(0.0, 10.0))


def scale_tail(model, config, ctx):
    with torch.no_grad():
        model.tail.weight.mul_(config.factor)
    ctx.note(f"tail weights x{config.factor}")
    return model


@define(frozen=True, kw_only=True)
class CountConfig:
    log: str = option(help="File to which each application appends a line.")
    fail_if_exists: str = option("", help="Raise if this file exists (simulates a crash).")
    sleep: float = option(0.0, help="Seconds to sleep after logging (to be killed meanwhile).")


def count(model, config, ctx):
    import os, time
    with open(config.log, "a") as handle:
        handle.write(f"stage{ctx.index + 1}\\n")
    if config.sleep:
        time.sleep(config.sleep)
    if config.fail_if_exists and os.path.exists(config.fail_if_exists):
        raise RuntimeError("simulated crash")
    return model


@define(frozen=True, kw_only=True)
class TraceConfig:
    size: int = option(8, help="Side of the example input used for tracing.", validator=in_range(2, 64))


def trace(model, config, ctx):
    """Turn the model into a torch.export graph (as quantization does), dynamic in batch, H and W."""
    example = torch.rand(2, 3, config.size, config.size)
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    return torch.export.export(model.eval(), (example,), dynamic_shapes=(dims,)).module()


@hookimpl
def srcompress_models():
    return [ModelEntry(name="tiny_tp", build=lambda scale, o: TinySR(scale, o.width), scales=(2, 4),
                       options_cls=TinyOptions, hints=lambda m: ModelHints(never_prune=("tail",)))]


@hookimpl
def srcompress_techniques():
    return [TechniqueEntry(name="scale_tail", config_cls=ScaleConfig, apply=scale_tail,
                           description="scales the last conv (test technique)"),
            TechniqueEntry(name="count", config_cls=CountConfig, apply=count, description="logs each application"),
            TechniqueEntry(name="trace", config_cls=TraceConfig, apply=trace, description="exports to a graph")]
'''
