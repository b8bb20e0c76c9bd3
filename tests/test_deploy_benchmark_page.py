"""benchmarks/deploy_f2srgan.py: a rerun rewrites the generated page and keeps the hand-written notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_deploy_benchmark_rerun_keeps_the_hand_written_notes() -> None:
    spec = importlib.util.spec_from_file_location("bench_deploy_f2srgan", REPO / "benchmarks" / "deploy_f2srgan.py")
    assert spec is not None and spec.loader is not None
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    old = "# old table\n\n| a |\n\n## Notes (written by hand after the run above)\n\n- kept\n"
    assert deploy.with_hand_notes("# new table\n| b |\n", old) == "# new table\n| b |\n\n## Notes (written by hand after the run above)\n\n- kept\n"
    assert deploy.with_hand_notes("# new table\n", "# a page without notes\n") == "# new table\n"
