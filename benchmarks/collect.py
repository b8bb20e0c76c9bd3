"""Assemble docs/benchmarks.md from the fragments each benchmark script writes.

Each script in benchmarks/ writes its latest figures, with its command and machine, to a fragment
``docs/benchmarks_<topic>.md``; this script puts them on one page in a fixed order.

    python benchmarks/collect.py            # writes docs/benchmarks.md
    python benchmarks/collect.py --check    # exit 1 if docs/benchmarks.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
ORDER = ["eval", "models", "deploy", "prune", "distill", "quantize", "light_f2srgan", "gpu", "gpu_recipe"]
HEADER = """# Benchmarks

Every figure below was measured by a script in `benchmarks/` (or a CLI command), named under its
table with the machine it ran on. Speed is always a ratio measured side by side in one run: these
machines are shared and noisy, so absolute milliseconds from different runs do not compare.
TensorRT numbers are not measured: TensorRT cannot be installed on this project's machines
(see [Deployment](deployment.md)).

This page is assembled by `python benchmarks/collect.py` from `docs/benchmarks_<topic>.md`.
"""


def _demoted(text: str) -> str:
    """A fragment with its own top-level title becomes a section of this page (``#`` -> ``##``)."""
    lines = text.splitlines()
    in_code = False
    has_title = any(line.startswith("# ") for line in lines)
    out = []
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        out.append("#" + line if has_title and not in_code and line.startswith("#") else line)
    return "\n".join(out)


def render() -> str:
    parts = [HEADER]
    for topic in ORDER:
        fragment = DOCS / f"benchmarks_{topic}.md"
        if fragment.is_file():
            parts.append(_demoted(fragment.read_text(encoding="utf-8").strip()) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/benchmarks.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    target = DOCS / "benchmarks.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print("docs/benchmarks.md is stale: run python benchmarks/collect.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
