"""The CLI's commands (``cmd_<name>(args, registry) -> exit code``)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.errors import SrcompressError
from srcompress.registry import Registry

__all__ = ["cmd_bench", "cmd_deploy", "cmd_eval", "cmd_list", "cmd_run", "cmd_validate"]


def cmd_run(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.engine import run

    result = run(args.recipe, run_dir=args.run_dir, registry=registry, quiet=args.quiet)
    if result.resumed_stages:
        print(f"reused finished stage(s) {', '.join(str(i + 1) for i in result.resumed_stages)} from {result.run_dir}")
    if result.report is not None:
        print(f"report: {result.report}")
    return 0


def cmd_validate(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.recipe import load_recipe

    recipe = load_recipe(args.recipe, registry=registry)
    stages = ", ".join(s.label for s in recipe.stages) or "no stages"
    backends = ", ".join(d.backend for d in recipe.deploy) or "no deployment"
    print(f"{args.recipe}: OK ({recipe.model.name} x{recipe.model.scale}; {stages}; {backends})")
    return 0


def _param_count(entry: Any) -> int | None:
    scale = entry.scales[0]
    try:
        with torch.device("meta"):
            model = entry.build(scale, entry.options_cls())
    except Exception:  # some architectures compute buffers eagerly; count on the CPU then
        try:
            model = entry.build(scale, entry.options_cls())
        except Exception:
            return None
    return sum(p.numel() for p in model.parameters())


def cmd_list(args: argparse.Namespace, registry: Registry) -> int:
    what = args.what
    if what in ("all", "plugins"):
        print("plugins: " + (", ".join(registry.plugin_names()) or "none"))
    if what in ("all", "models"):
        rows = []
        for m in registry.list_models():
            params = _param_count(m)
            weights = ", ".join(sorted({f"{w.tag}@x{w.scale}" for w in m.weights})) or "-"
            scales = ",".join(f"x{s}" for s in m.scales)
            rows.append([m.name, m.plugin, scales, f"{params:,}" if params is not None else "?", weights])
        _table("models", ["name", "plugin", "scales", "params", "weights"], rows)
    for kind in ("techniques", "backends", "losses", "metrics"):
        if what in ("all", kind):
            entries = getattr(registry, f"list_{kind}")()
            _table(kind, ["name", "plugin", "description"], [[e.name, e.plugin, e.description] for e in entries])
    return 0


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"{title}:")
    if not rows:
        print("  (none)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_eval(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.measure.evaluate import evaluate

    model = _load_model(args, registry)
    result = evaluate(
        model, args.data, args.scale, root=args.root, metrics=args.metrics, limit=args.limit, registry=registry
    )
    print(result.table())
    return 0


def _load_model(args: argparse.Namespace, registry: Registry) -> nn.Module:
    """The model a command names: a run directory's last finished stage, a checkpoint file, or --model.

    An exported graph (``.pt2``, e.g. a PT2E-quantized stage) is returned as loaded: its mode is part
    of the graph (``eval()`` raises on it; :func:`srcompress.modes.eval_mode` lets it run as it is).
    """
    from srcompress.checkpoint import load_checkpoint, load_exported, read_checkpoint
    from srcompress.models import build_model, ref_from_mapping
    from srcompress.recipe import make_converter
    from srcompress.recipe_types import ModelRef

    source = getattr(args, "checkpoint", None) or getattr(args, "source", None)
    if source is not None:
        path = Path(source)
        if path.is_dir():
            return _last_stage_model(path, registry)
        if path.suffix == ".pt2":
            return load_exported(path)
        payload = read_checkpoint(path)
        if payload["model"] is None:
            raise SrcompressError(f"{path}: holds a user module; load it in Python with srcompress.checkpoint.load_checkpoint")
        model = build_model(ref_from_mapping(payload["model"], registry), registry=registry, load_weights=False)
        return load_checkpoint(path, model).eval()
    if args.model is None:
        raise SrcompressError("give a run directory / checkpoint, or --model NAME")
    conv = make_converter(registry)
    mapping = {"name": args.model, "scale": args.scale}
    if args.weights:
        mapping["weights"] = args.weights
    ref = conv.structure(mapping, ModelRef)
    return build_model(ref, registry=registry).eval()


def _last_stage_model(run_dir: Path, registry: Registry) -> nn.Module:
    from srcompress.checkpoint import load_stage_model
    from srcompress.rundir import stage_folders

    stages = stage_folders(run_dir)
    if not stages:
        raise SrcompressError(f"{run_dir}: no finished stage checkpoint (stage-XX/model.pt or .pt2) in this run directory")
    model = load_stage_model(stages[-1], registry=registry)
    with contextlib.suppress(NotImplementedError):  # an exported graph has no eval(): see _load_model
        model.eval()
    return model


def backend_options(items: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` items as a mapping; each value is read as a YAML scalar or list (``int8``,
    ``2``, ``true``, ``[a, b]``), never evaluated as code."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SrcompressError(f"--option {item!r}: expected KEY=VALUE, e.g. precision=int8")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise SrcompressError(f"--option {item!r}: the value is not a YAML scalar or list") from None
    return options


def cmd_deploy(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.deploy import deploy_model

    model = _load_model(args, registry)
    example = torch.rand(1, 3, 64, 64)
    options = backend_options(args.option)
    for backend in args.backend:
        deployed, check = deploy_model(model, backend, options, example, args.out / backend, registry=registry)
        print(f"{backend}: {deployed.metadata.get('path', args.out / backend)} (max |diff| vs torch {check.max_abs:.2e})")
    return 0


def cmd_bench(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.deploy import bench_backends, format_table, parse_lr_size

    model = _load_model(args, registry)
    backends = [(name, {}) for name in (args.backend or ["torch", "onnx"])]
    sizes = [parse_lr_size(s) for s in (args.size or ["128x128", "180x320"])]
    rows = bench_backends(model, backends, sizes, threads=args.threads, runs=args.runs, registry=registry)
    print(format_table(rows))
    return 0
