"""Load the repository's scripts (benchmarks/, tools/) as modules, for the tests that check them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """Import ``REPO/relative`` (e.g. ``"benchmarks/light_f2srgan.py"``) under ``name``.

    The module is registered in ``sys.modules`` before it runs: attrs classes defined in it look
    their module up there. ``name`` defaults to ``bench_<stem>``.
    """
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(name or f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None, f"no loadable script at {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
