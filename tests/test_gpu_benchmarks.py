"""The GPU benchmark scripts: the GPU recipe's shortened copies and two-point timing fit, and the
torch-on-GPU configuration list and summary (their timing runs need a CUDA GPU; these parts do not)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from torch import nn

from srcompress.deploy import BenchRow
from srcompress.measure import section_markers, splice_section
from srcompress.recipe import load_recipe

from repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
GPU_RECIPE = REPO / "recipes" / "light_f2srgan_gpu.yaml"


def _script(name: str) -> ModuleType:
    return load_script(f"benchmarks/{name}.py")


@pytest.fixture(scope="module")
def gpu_recipe() -> ModuleType:
    return _script("gpu_recipe")


@pytest.fixture(scope="module")
def gpu_torch() -> ModuleType:
    return _script("gpu_torch")


def test_derive_shortens_every_training_stage_and_names_each_change(gpu_recipe: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpu_recipe, "vgg_weights_present", lambda term: False)
    recipe = yaml.safe_load(GPU_RECIPE.read_text())
    derived, changes, steps = gpu_recipe.derive(recipe, train=["T91"], steps_of=lambda full: round(full * 0.05))
    assert steps == {0: (2000, 100), 1: (10000, 500), 3: (5000, 250), 4: (1000, 50)}
    distill = derived["stages"][1]
    assert distill["steps"] == 500 and distill["step_size"] == 270 and distill["val_every"] == 50
    assert derived["stages"][4]["finetune"]["checkpoint_every"] == 25
    assert all(term["kind"] != "vgg" for stage in derived["stages"] for term in stage.get("losses", []))
    assert derived["data"]["train"] == ["T91"] and derived["data"]["eval"] == ["Set5"]
    assert recipe["stages"][1]["steps"] == 10000, "the recipe itself is left alone"
    assert changes[0] == "data.train: ['DIV2K'] -> ['T91']"
    assert sum("vgg term dropped" in c for c in changes) == 2
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(derived))
    assert load_recipe(path).stages[1].config.steps == 500  # still a valid recipe


def test_a_vgg_term_with_its_own_weights_file_is_kept(gpu_recipe: ModuleType, tmp_path: Path) -> None:
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"")
    recipe = yaml.safe_load(GPU_RECIPE.read_text())
    recipe["stages"][1]["losses"] = [{"kind": "vgg", "weight": 1.0, "weights": str(weights)}, {"kind": "vgg", "weight": 1.0, "weights": str(tmp_path / "absent.pth")}]
    derived, changes, _ = gpu_recipe.derive(recipe, train=["T91"], steps_of=lambda full: 10)
    assert derived["stages"][1]["losses"] == [{"kind": "vgg", "weight": 1.0, "weights": str(weights)}]
    assert "stage 1 (distill): vgg term dropped (its weights file, vgg19-dcbb9e9d.pth, is missing)" in changes


def test_stage_fit_separates_fixed_cost_from_time_per_step(gpu_recipe: ModuleType) -> None:
    short, long = gpu_recipe.StageClock(), gpu_recipe.StageClock()
    short.stage_s, long.stage_s = {0: 12.0, 1: 3.0}, {0: 57.0, 1: 3.5}
    steps = [{0: (2000, 10)}, {0: (2000, 100)}]
    fixed, per_step, full = gpu_recipe.stage_fit(0, steps, [short, long])
    assert (round(fixed, 6), round(per_step, 6), full) == (7.0, 0.5, 2000)
    assert gpu_recipe.stage_fit(1, steps, [short, long]) is None  # the prune stage has no steps
    assert gpu_recipe.stage_fit(0, [{0: (8, 8)}, {0: (8, 8)}], [short, long]) is None  # ran in full both times


def test_gpu_torch_configurations_add_fft_free_and_compile_rows_only_where_they_apply(gpu_torch: ModuleType) -> None:
    plain = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    labels = [c[2] for c in gpu_torch.configurations(plain, "cuda", compile_mode=None)]
    assert labels == ["fp32", "fp16", "bf16", "fp16, channels_last"]
    rows = gpu_torch.configurations(plain, "cuda", compile_mode="reduce-overhead")
    assert rows[-1][1] == {"device": "cuda", "precision": "fp16", "channels_last": True, "compile": True, "compile_mode": "reduce-overhead"}


def test_gpu_torch_summary_compares_each_model_best_with_light_best(gpu_torch: ModuleType) -> None:
    def row(label: str, ms: float) -> BenchRow:
        return BenchRow(label=label, backend="torch", precision="fp16", lr_size=(180, 320), median_ms=ms, p90_ms=ms, device="cuda")

    sections = [("released Light F2SRGAN", 5.94, [row("fp32", 4.0), row("fp16", 2.0)]), ("ours", 3.02, [row("fp32", 3.0), row("fp16", 1.5)])]
    lines = gpu_torch.summary_lines(sections)
    assert lines[2] == "| released Light F2SRGAN | 5.94 | 180 x 320 | fp16 | 2.00 | 1.00x |"
    assert lines[3] == "| ours | 3.02 | 180 x 320 | fp16 | 1.50 | 0.75x |"


def test_gpu_torch_page_says_when_it_is_partial(gpu_torch: ModuleType, tmp_path: Path) -> None:
    args = gpu_torch.argparse.Namespace(sizes=[(180, 320)], compile=None, skip_compile=[], run=None, runs=3, warmup=1,
                                        out=tmp_path / "gpu.md", device="cpu")
    row = BenchRow(label="fp32", backend="torch", precision="fp32", lr_size=(180, 320), median_ms=4.0, p90_ms=4.0)
    page = gpu_torch.render(args, [("released Light F2SRGAN", 5.94, [row])], 60.0, expected=4)
    assert "**Partial: 1 of 4 models measured (the run did not finish).**" in page
    assert "Partial" not in gpu_torch.render(args, [("released Light F2SRGAN", 5.94, [row])], 60.0, expected=1)


def test_gpu_torch_rerun_keeps_the_hand_written_intro(gpu_torch: ModuleType) -> None:
    text = (REPO / "docs" / "benchmarks_gpu.md").read_text()
    start, end = "<!-- gpu-torch-bench:start -->", "<!-- gpu-torch-bench:end -->"
    assert text.startswith(gpu_torch.PAGE_TITLE + "\n") and text.index(start) < text.index("Command (repository root):") < text.index(end)
    intro = text[: text.index(start)]
    assert "Read it:" in intro  # the reading written by hand sits outside the generated section
    rerun = splice_section(text, "Command (repository root):\n\nnew tables\n", gpu_torch.PAGE_MARKER, gpu_torch.PAGE_TITLE)
    assert rerun == intro + f"{start}\nCommand (repository root):\n\nnew tables\n{end}\n"


def test_gpu_recipe_page_reports_a_run_that_ended_with_an_error(gpu_recipe: ModuleType) -> None:
    short, long = gpu_recipe.StageClock(), gpu_recipe.StageClock()
    short.stage_s, long.stage_s = {0: 12.0}, {0: 57.0}
    long.error = "DeployError: no Q/DQ nodes"
    recipe = {"device": "cpu", "stages": [{"type": "distill", "name": "warmup"}, {"type": "quantize", "name": "int8"}]}
    args = argparse.Namespace(recipe=Path("recipes/light_f2srgan_gpu.yaml"), train=["T91"], probe_steps=10, fraction=0.05,
                              run_dir=Path("runs/t"), out=Path("page.md"))
    page = gpu_recipe.render(args, recipe, [], [{0: (2000, 10)}, {0: (2000, 100)}], [short, long], "H100; torch 2.11")
    assert "| 0 warmup (distill) | 10 / 100 / 2000 | 12.0 / 57.0 | 7.0 | 500 | 16.8 min |" in page
    assert "1 int8" not in page  # not timed in either run
    assert "**The long run ended with an error** (the stages above it were timed): `DeployError: no Q/DQ nodes`" in page
    assert "extrapolated over the stages timed in both runs only: **17 min**" in page


def test_gpu_recipe_page_marks_a_stage_whose_steps_the_two_runs_cannot_resolve(gpu_recipe: ModuleType) -> None:
    short, long = gpu_recipe.StageClock(), gpu_recipe.StageClock()
    short.stage_s, long.stage_s = {0: 82.8}, {0: 79.0}  # 10 and 20 QAT steps on the H100: noise over the steps
    recipe = {"device": "cpu", "stages": [{"type": "quantize", "name": "int8"}]}
    args = argparse.Namespace(recipe=Path("recipes/light_f2srgan_gpu.yaml"), train=["T91"], probe_steps=10, fraction=0.02,
                              run_dir=Path("runs/t"), out=Path("page.md"))
    page = gpu_recipe.render(args, recipe, [], [{0: (1000, 10)}, {0: (1000, 20)}], [short, long], "H100; torch 2.11")
    assert "| 0 int8 (quantize) | 10 / 20 / 1000 | 82.8 / 79.0 | 82.8 | unresolved (the longer run was not slower) | >= 1.4 min |" in page
    assert "extrapolated: at least **1 min**" in page


def test_committed_gpu_recipe_page_keeps_its_reading_outside_the_generated_section(gpu_recipe: ModuleType) -> None:
    start, end = section_markers(gpu_recipe.PAGE_MARKER)
    text = (REPO / "docs" / "benchmarks_gpu_recipe.md").read_text()
    assert text.startswith(gpu_recipe.page_title(Path("recipes/light_f2srgan_gpu.yaml")) + "\n\n" + start)
    assert text.index(end) < text.index("## Reading")
