"""write_report: a 2-stage report renders (Markdown + JSON + two PNGs, referenced, written atomically);
write_section: a generated section of a hand-kept page is replaced, the rest kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from srcompress.measure import (
    EvalResult, KeptImage, StageRecord, crops_from_results, section_markers, select_crop_box, splice_section, write_report,
    write_section,
)


def _result(seed: int, names: tuple[str, ...] = ("baby", "bird")) -> EvalResult:
    g = torch.Generator().manual_seed(seed)
    result = EvalResult(scale=2, metrics=("psnr", "ssim"), higher_is_better={"psnr": True, "ssim": True})
    result.per_image["Set5"] = {n: {"psnr": 30.0 + seed, "ssim": 0.9} for n in names}
    result.kept["Set5"] = {
        n: KeptImage(lr=torch.rand(3, 20, 24, generator=g), sr=torch.rand(3, 40, 48, generator=g), hr=torch.rand(3, 40, 48, generator=g))
        for n in names
    }
    return result


def _records() -> list[StageRecord]:
    return [
        StageRecord(stage="baseline", params=202_233, macs=11_600_000_000, latency_ms={"torch": 850.0, "onnx": 500.0},
                    quality={"Set5": {"psnr": 28.06, "ssim": 0.8100, "niqe": 6.247, "lpips": None},
                             "Set14": {"psnr": 25.89, "ssim": 0.7000, "niqe": 5.409, "lpips": None}}),
        StageRecord(stage="prune 50%", params=101_000, macs=5_800_000_000, latency_ms={"torch": 425.0, "onnx": 250.0},
                    quality={"Set5": {"psnr": 27.56, "ssim": 0.8000, "niqe": 6.5, "lpips": None},
                             "Set14": {"psnr": 25.50, "ssim": 0.6900, "niqe": 5.7, "lpips": None}},
                    extras={"file_size": "0.4 MB"}),
    ]


def test_two_stage_report_renders(tmp_path: Path) -> None:
    results = {"baseline": _result(0), "prune 50%": _result(1)}
    crops = crops_from_results(results, size=32)
    path = write_report(tmp_path / "report", _records(), title="f2srgan x4", crops=crops, notes=["LPIPS skipped: offline"])
    out = tmp_path / "report"
    assert path == out / "report.md"
    assert sorted(p.name for p in out.iterdir()) == ["crops.png", "quality_vs_latency.png", "report.json", "report.md"]
    text = path.read_text()
    assert "![Quality against latency, one point per stage](quality_vs_latency.png)" in text
    assert "![Crops side by side](crops.png)" in text
    assert "| baseline | 202.23 k | 11.60 G | 850.0 | 500.0 |" in text
    assert "| prune 50% | 101.00 k (0.50x) | 5.80 G (0.50x) | 425.0 (2.00x faster) | 250.0 (2.00x faster) |" in text
    assert "## Quality on Set5" in text and "## Quality on Set14" in text
    assert "| Stage | PSNR-Y ↑ | SSIM-Y ↑ | NIQE ↓ |" in text  # LPIPS has no value anywhere: no column
    assert "| prune 50% | 27.5600 (-0.50) | 0.80000 (-0.01000) | 6.5000 (+0.253) |" in text
    assert "- LPIPS skipped: offline" in text
    data = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["baseline", "prune 50%"]
    assert data["stages"][1]["latency_ms"] == {"torch": 425.0, "onnx": 250.0}
    assert data["figures"] == {"quality_vs_latency": "quality_vs_latency.png", "crops": "crops.png"}
    plot = Image.open(out / "quality_vs_latency.png")
    assert plot.format == "PNG" and plot.size[0] > plot.size[1] > 300
    grid = Image.open(out / "crops.png")
    assert grid.format == "PNG" and grid.size[0] > grid.size[1]  # 2 rows x 4 columns
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_crops_columns_and_box() -> None:
    results = {"baseline": _result(0), "prune 50%": _result(1, ("baby",))}
    crops = crops_from_results(results, size=32)
    assert list(crops) == ["Set5/baby"]  # only images every stage kept
    assert list(crops["Set5/baby"]) == ["bicubic", "baseline", "prune 50%", "HR"]
    assert {tuple(v.shape) for v in crops["Set5/baby"].values()} == {(3, 32, 32)}
    hr = torch.zeros(3, 64, 64)
    hr[:, 40:56, 8:24] = torch.rand(3, 16, 16)  # the only detail
    top, left, h, w = select_crop_box(hr, 16)
    assert (h, w) == (16, 16) and abs(top - 40) <= 4 and abs(left - 8) <= 4


def test_without_latency_plots_against_macs_and_without_crops(tmp_path: Path) -> None:
    records = [StageRecord(stage=s, params=p, macs=m, quality={"Set5": {"psnr": q}})
               for s, p, m, q in [("a", 10, 2_000_000, 30.0), ("b", 5, 1_000_000, 29.5)]]
    path = write_report(tmp_path, records, title="no latency")
    assert (tmp_path / "quality_vs_latency.png").is_file() and not (tmp_path / "crops.png").exists()
    assert "crops.png" not in path.read_text()
    assert json.loads((tmp_path / "report.json").read_text())["figures"]["crops"] is None


def test_rewrite_leaves_no_temporary_files(tmp_path: Path) -> None:
    for _ in range(2):
        write_report(tmp_path, _records(), title="twice")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality_vs_latency.png", "report.json", "report.md"]


def test_empty_records_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one StageRecord"):
        write_report(tmp_path, [], title="nothing")


def test_splice_section_replaces_only_the_marked_section() -> None:
    start, end = section_markers("bench")
    assert (start, end) == ("<!-- bench:start -->", "<!-- bench:end -->")
    fresh = splice_section("", "table 1\n", "bench", "# Title")
    assert fresh == f"# Title\n\n{start}\ntable 1\n{end}\n"
    edited = "intro by hand\n" + fresh + "\n## Reading\n\nkept\n"
    assert splice_section(edited, "table 2", "bench", "# Title") == f"intro by hand\n# Title\n\n{start}\ntable 2\n{end}\n\n## Reading\n\nkept\n"
    # a page without both markers is started afresh (its old text is not the generated section's)
    assert splice_section(f"old\n{start}\nno end\n", "t", "bench", "# T") == f"# T\n\n{start}\nt\n{end}\n"
    assert splice_section(f"{end}\nold\n{start}\n", "t", "bench", "# T") == f"# T\n\n{start}\nt\n{end}\n"


def test_write_section_creates_the_folder_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    page = write_section(tmp_path / "docs" / "page.md", "t\n", marker="m", title="# P")
    assert page.read_text() == "# P\n\n<!-- m:start -->\nt\n<!-- m:end -->\n"
    assert [p.name for p in page.parent.iterdir()] == ["page.md"]
