"""benchmarks/deploy_f2srgan.py: a rerun rewrites the generated section and keeps the hand-written notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from srcompress.measure import section_markers

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("bench_deploy_f2srgan", REPO / "benchmarks" / "deploy_f2srgan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_benchmark_rerun_keeps_the_hand_written_notes(tmp_path: Path) -> None:
    deploy = _script()
    start, end = section_markers(deploy.PAGE_MARKER)
    page = tmp_path / "docs" / "benchmarks_deploy.md"
    deploy.write_section(page, "| a |\n", marker=deploy.PAGE_MARKER, title=deploy.PAGE_TITLE)
    assert page.read_text() == f"{deploy.PAGE_TITLE}\n\n{start}\n| a |\n{end}\n"
    page.write_text(page.read_text() + "\n## Notes (written by hand)\n\n- kept\n")
    deploy.write_section(page, "| b |\n", marker=deploy.PAGE_MARKER, title=deploy.PAGE_TITLE)
    assert page.read_text() == f"{deploy.PAGE_TITLE}\n\n{start}\n| b |\n{end}\n\n## Notes (written by hand)\n\n- kept\n"


def test_committed_deploy_page_has_its_generated_section() -> None:
    deploy = _script()
    start, end = section_markers(deploy.PAGE_MARKER)
    text = (REPO / "docs" / "benchmarks_deploy.md").read_text()
    assert text.startswith(deploy.PAGE_TITLE + "\n\n" + start)
    assert text.index(end) < text.index("## Notes (written by hand")
