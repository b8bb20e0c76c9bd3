"""The typed pieces of a recipe that services share (data, model reference).

The recipe loader (:mod:`srcompress.recipe`) structures YAML into these classes; the training core
and techniques receive them.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field

from srcompress.config import in_range, names, option

__all__ = ["DataConfig", "ModelRef"]



@define(frozen=True, kw_only=True)
class DataConfig:
    """Where training and evaluation images come from, and how training batches are cut."""

    root: str | None = option(None, help="Data root holding datasets by name; default $SRCOMPRESS_DATA, else the cache.")
    train: tuple[str, ...] = option(
        ("T91", "BSD200"), help="Training sets: dataset names or folders of HR images.", converter=names
    )
    eval: tuple[str, ...] = option(("Set5", "Set14"), help="Evaluation sets: dataset names or folders.", converter=names)
    patch: int = option(96, help="HR patch size in pixels (a multiple of the scale).", validator=in_range(8, 1024))
    batch: int = option(16, help="Training batch size (global, over all processes).", validator=in_range(1, 4096))
    workers: int = option(0, help="DataLoader worker processes.", validator=in_range(0, 64))
    eval_limit: int | None = option(
        None, help="Evaluate on at most this many images per set (None: all).", validator=in_range(1, None)
    )


@define(frozen=True, kw_only=True)
class ModelRef:
    """A registered model by name: ``{name: f2srgan, scale: 4, weights: official, blocks: 8}``.

    Keys other than ``name``, ``scale`` and ``weights`` are the model's options (its ``options_cls``).
    """

    name: str = option(help="Registered model name (see `srcompress list models`).")
    scale: int = option(4, help="Upscaling factor.", validator=in_range(1, 16))
    weights: str | None = option(
        None, help="Published weights tag (e.g. 'official'), a file path, or an https URL; None: random init."
    )
    options: Any = field(default=None)
