"""Benchmark scripts that write a generated section into a page with hand-written readings around it.

A rerun rewrites the section between the script's markers and keeps the rest (benchmarks/deploy_f2srgan.py,
benchmarks/distill_f2srgan.py; light_f2srgan.py and gpu_torch.py are covered in their own test files).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from srcompress.measure import section_markers

from repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
SCORES = {"psnr": 28.061, "ssim": 0.79962, "niqe": 6.2451, "psnr_teacher": float("inf")}


def _deploy():
    return load_script("benchmarks/deploy_f2srgan.py")


def _distill():
    return load_script("benchmarks/distill_f2srgan.py")


def test_deploy_benchmark_rerun_keeps_the_hand_written_notes(tmp_path: Path) -> None:
    deploy = _deploy()
    start, end = section_markers(deploy.PAGE_MARKER)
    page = tmp_path / "docs" / "benchmarks_deploy.md"
    deploy.write_section(page, "| a |\n", marker=deploy.PAGE_MARKER, title=deploy.PAGE_TITLE)
    assert page.read_text() == f"{deploy.PAGE_TITLE}\n\n{start}\n| a |\n{end}\n"
    page.write_text(page.read_text() + "\n## Notes (written by hand)\n\n- kept\n")
    deploy.write_section(page, "| b |\n", marker=deploy.PAGE_MARKER, title=deploy.PAGE_TITLE)
    assert page.read_text() == f"{deploy.PAGE_TITLE}\n\n{start}\n| b |\n{end}\n\n## Notes (written by hand)\n\n- kept\n"


def _args() -> argparse.Namespace:
    return argparse.Namespace(steps=250, batch=16, patch=48, lr=1e-4, threads=1, at_weight=100.0, afd_weight=200.0,
                              discriminator="f2srgan_discriminator", disc_features=[32, 64], disc_hidden=256)


def test_distill_section_lists_settings_and_one_row_per_variant() -> None:
    distill = _distill()
    results = {"teacher": {"scores": {"Set5": SCORES, "Set14": SCORES}, "note": "published"}}
    text = distill.distill_section(results, _args(), "python benchmarks/distill_f2srgan.py --steps 250")
    lines = text.splitlines()
    assert lines[0] == "Command: `python benchmarks/distill_f2srgan.py --steps 250`"
    assert lines[2].startswith("Settings: 250 steps, batch 16, HR patch 48, AdamW lr 0.0001,")
    assert "discriminator f2srgan_discriminator features [32, 64], hidden 256" in lines[2]
    assert lines[-1] == "| teacher | 28.06 / 0.7996 | 6.245 | - | 28.06 / 0.7996 | 6.245 | - | published |"
    assert len(lines) == 7


def test_rerun_keeps_the_hand_written_text_around_the_table(tmp_path: Path) -> None:
    distill = _distill()
    start, end = section_markers(distill.PAGE_MARKER)
    page = tmp_path / "benchmarks_distill.md"
    page.write_text(f"{distill.PAGE_TITLE}\n\nIntro by hand.\n\n{start}\nold table\n{end}\n\n## Result (by hand)\n")
    distill.write_section(page, "new table", marker=distill.PAGE_MARKER, title=distill.PAGE_TITLE)
    assert page.read_text() == f"{distill.PAGE_TITLE}\n\nIntro by hand.\n\n{start}\nnew table\n{end}\n\n## Result (by hand)\n"


@pytest.mark.parametrize(("script", "page", "next_heading"), [
    ("deploy_f2srgan", "benchmarks_deploy.md", "## Notes (written by hand"),
    ("distill_f2srgan", "benchmarks_distill.md", "## Result:"),
])
def test_committed_page_has_its_generated_section_before_the_readings(script: str, page: str, next_heading: str) -> None:
    module = load_script(f"benchmarks/{script}.py")
    start, end = section_markers(module.PAGE_MARKER)
    text = (REPO / "docs" / page).read_text()
    assert text.startswith(module.PAGE_TITLE + "\n")
    assert text.index(start) < text.index(end) < text.index(next_heading)
