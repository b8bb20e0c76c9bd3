"""srcompress: compress single-image super-resolution networks.

Images at every public boundary are float32 RGB NCHW tensors in [0, 1].
"""

from __future__ import annotations

from srcompress.entries import (
    BackendEntry,
    Deployed,
    LossEntry,
    MetricEntry,
    ModelEntry,
    ModelHints,
    NoOptions,
    TechniqueEntry,
    WeightsEntry,
)
from srcompress.errors import SrcompressError
from srcompress.hookspecs import hookimpl, hookspec
from srcompress.registry import (
    Registry,
    default_registry,
    get_backend,
    get_loss,
    get_metric,
    get_model,
    get_technique,
    list_backends,
    list_losses,
    list_metrics,
    list_models,
    list_techniques,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``srcompress.run`` / ``srcompress.compress``, imported on first use (they pull in torch)."""
    if name in ("run", "compress", "RunResult"):
        from srcompress import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'srcompress' has no attribute {name!r}")

__all__ = [
    "BackendEntry",
    "Deployed",
    "LossEntry",
    "MetricEntry",
    "ModelEntry",
    "ModelHints",
    "NoOptions",
    "Registry",
    "RunResult",
    "SrcompressError",
    "TechniqueEntry",
    "WeightsEntry",
    "__version__",
    "compress",
    "default_registry",
    "get_backend",
    "get_loss",
    "get_metric",
    "get_model",
    "get_technique",
    "hookimpl",
    "hookspec",
    "list_backends",
    "list_losses",
    "list_metrics",
    "list_models",
    "list_techniques",
    "run",
]
