"""The ``srcompress`` command line.

``srcompress [--quiet] [--debug] [--disable-plugin NAME] COMMAND ...`` with commands ``run``,
``validate``, ``eval``, ``list``, ``deploy`` and ``bench``. Errors print one line and exit 1
(2 for usage errors); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srcompress.errors import SrcompressError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srcompress", description="Compress super-resolution networks.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only results and errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--disable-plugin", action="append", default=[], metavar="NAME", help="block the plugin with this entry-point name"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe (resumes an interrupted run)")
    p.add_argument("recipe", type=Path)
    p.add_argument("--run-dir", type=Path, default=None, help="default: runs/<recipe name>")

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe", type=Path)

    p = sub.add_parser("eval", help="evaluate a model on datasets (PSNR/SSIM on Y, shave = scale)")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", default=None, help="published weights tag (e.g. official), a path or a URL")
    p.add_argument("--checkpoint", type=Path, default=None, help="an srcompress checkpoint (stage-XX/model.pt)")
    p.add_argument("--data", nargs="+", default=["Set5", "Set14"], help="dataset names or folders")
    p.add_argument("--metrics", nargs="+", default=["psnr", "ssim"])
    p.add_argument("--root", default=None, help="data root (default $SRCOMPRESS_DATA)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images per set")

    p = sub.add_parser("list", help="list registered models, techniques, backends, losses, metrics")
    p.add_argument("what", nargs="?", default="all", choices=["all", "models", "techniques", "backends", "losses", "metrics", "plugins"])

    p = sub.add_parser("deploy", help="deploy a model or a run's final model to backends")
    _model_source_args(p)
    p.add_argument("--backend", action="append", required=True, help="backend name (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. precision=int8 for a quantized model (value read as YAML; repeatable; "
                   "applies to every --backend)")
    p.add_argument("--out", type=Path, default=Path("deploy"))

    p = sub.add_parser("bench", help="latency table across backends and LR sizes")
    _model_source_args(p)
    p.add_argument("--backend", action="append", default=None, help="backend name (repeatable; default: torch, onnx)")
    p.add_argument("--size", action="append", default=None, help="LR size HxW (repeatable; default 128x128 and 180x320)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    return parser


def _model_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=None, help="a run directory or a checkpoint file (model.pt)")
    p.add_argument("--model", default=None, help="registered model name (instead of a run directory)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", default=None)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    # third-party libraries' import-time deprecation chatter is not the user's business
    for noisy in ("torch.utils._pytree", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return _dispatch(args)
    except SrcompressError as exc:
        if args.debug:
            raise
        print(f"srcompress: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("srcompress: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _registry(args: argparse.Namespace) -> Any:
    from srcompress.registry import Registry, reset_default_registry

    registry = Registry(disabled=args.disable_plugin)
    reset_default_registry(registry)
    return registry


def _dispatch(args: argparse.Namespace) -> int:
    from srcompress import cli_commands as commands

    registry = _registry(args)
    handler = getattr(commands, f"cmd_{args.command}")
    return int(handler(args, registry) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
