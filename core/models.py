"""Build registered models from a :class:`~srcompress.recipe_types.ModelRef`, with their weights.

Every model built here carries its reference (``model_ref_of(model)``), so checkpoints can rebuild
the architecture later without pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from torch import nn

from srcompress.entries import ModelEntry, NoOptions, WeightsEntry
from srcompress.errors import RecipeError
from srcompress.recipe_types import ModelRef
from srcompress.registry import Registry, default_registry

__all__ = ["build_model", "model_ref_of", "ref_from_mapping", "ref_to_mapping", "set_model_ref"]

_REF_ATTR = "_srcompress_ref"


def ref_to_mapping(ref: ModelRef) -> dict[str, Any]:
    """Plain data of a model reference (name, scale, options as a dict; weights not included)."""
    options = attrs.asdict(ref.options, recurse=True) if attrs.has(type(ref.options)) else {}
    return {"name": ref.name, "scale": ref.scale, "options": options}


def ref_from_mapping(mapping: dict[str, Any], registry: Registry | None = None) -> ModelRef:
    """Inverse of :func:`ref_to_mapping` (weights are not re-loaded: the checkpoint holds them)."""
    entry = (registry or default_registry()).get_model(mapping["name"])
    options = entry.options_cls(**mapping.get("options", {}))
    return ModelRef(name=mapping["name"], scale=int(mapping["scale"]), weights=None, options=options)


def set_model_ref(model: nn.Module, ref: ModelRef) -> None:
    object.__setattr__(model, _REF_ATTR, ref)


def model_ref_of(model: nn.Module) -> ModelRef | None:
    """The reference a model was built from, or None for a user's own module."""
    return getattr(model, _REF_ATTR, None)


def _weights_entry(entry: ModelEntry, tag: str, scale: int) -> WeightsEntry | None:
    for weights in entry.weights:
        if weights.tag == tag and weights.scale == scale:
            return weights
    return None


def build_model(ref: ModelRef, *, registry: Registry | None = None, load_weights: bool = True) -> nn.Module:
    """Build ``ref``'s architecture and load its weights (a tag, a path or a URL).

    Published weights whose ``options`` differ from the recipe's (e.g. the KD student's 8 blocks) win:
    the checkpoint defines the architecture it holds.
    """
    registry = registry or default_registry()
    entry = registry.get_model(ref.name)
    options = ref.options if ref.options is not None else entry.options_cls()
    source: Any = None
    if ref.weights is not None and load_weights:
        published = _weights_entry(entry, ref.weights, ref.scale)
        if published is not None:
            source = published
            if published.options and not isinstance(options, NoOptions):
                options = attrs.evolve(options, **dict(published.options))
        elif "/" in ref.weights or "." in ref.weights or ref.weights.startswith("~"):
            source = ref.weights
        else:
            tags = sorted({w.tag for w in entry.weights if w.scale == ref.scale})
            raise RecipeError(
                "model.weights",
                f"model '{ref.name}' has no published weights '{ref.weights}' at x{ref.scale} "
                f"(available: {', '.join(tags) or 'none'}); give a file path or an https URL instead",
            )
    model = entry.build(ref.scale, options)
    if source is not None:
        _load_weights(entry, model, source)
    set_model_ref(model, ModelRef(name=ref.name, scale=ref.scale, weights=ref.weights, options=options))
    return model


def _load_weights(entry: ModelEntry, model: nn.Module, source: Any) -> None:
    from srcompress.weights import load_checkpoint_file, load_state_into, resolve_weights

    path = resolve_weights(source)
    if entry.load_weights is not None:
        entry.load_weights(model, Path(path))
        return
    state = load_checkpoint_file(path)
    load_state_into(model, state, path)
