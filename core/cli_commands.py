"""The CLI's commands (``cmd_<name>(args, registry) -> exit code``)."""

from __future__ import annotations

import argparse
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
    from srcompress.checkpoint import load_checkpoint, load_exported, read_checkpoint
    from srcompress.models import build_model, ref_from_mapping
    from srcompress.recipe import make_converter
    from srcompress.recipe_types import ModelRef

    source = getattr(args, "checkpoint", None) or getattr(args, "source", None)
    if source is not None:
        path = Path(source)
        if path.is_dir():
            path = _final_checkpoint(path)
        if path.suffix == ".pt2":
            return load_exported(path).eval()
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


def _final_checkpoint(run_dir: Path) -> Path:
    from srcompress.rundir import STAGE_MODEL_FILES, stage_folders

    stages = stage_folders(run_dir)
    if not stages:
        raise SrcompressError(f"{run_dir}: no finished stage checkpoint (stage-XX/model.pt or .pt2) in this run directory")
    return next(stages[-1] / name for name in STAGE_MODEL_FILES if (stages[-1] / name).is_file())


def cmd_deploy(args: argparse.Namespace, registry: Registry) -> int:
    from srcompress.deploy import deploy_model

    model = _load_model(args, registry)
    example = torch.rand(1, 3, 64, 64)
    for backend in args.backend:
        entry = registry.get_backend(backend)
        config = entry.config_cls()
        deployed, check = deploy_model(model, backend, config, example, args.out / backend, registry=registry)
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
