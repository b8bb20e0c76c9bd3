"""Engine: a run writes its directory, resumes after a crash or SIGKILL, re-runs only changed stages."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from plugin_dists import THIRD_PARTY_PLUGIN, make_dist
from srcompress.checkpoint import load_checkpoint, save_checkpoint
from srcompress.cli_commands import _load_model, backend_options
from srcompress.engine import compress, run
from srcompress.errors import SrcompressError, StageError
from srcompress.registry import Registry, reset_default_registry
from srcompress.rundir import stage_folders


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_dist(tmp_path / "site", "srcompress-tinytp", {"tinytp": "tinytp_plugin"}, {"tinytp_plugin": THIRD_PARTY_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def registry(site: Path) -> Registry:
    registry = Registry()
    reset_default_registry(registry)
    yield registry
    reset_default_registry(None)


def _recipe(tmp_path: Path, *, fail: bool = False, factor: float = 0.5, sleep: float = 0.0, first: float = 0.5) -> dict:
    log = tmp_path / "log.txt"
    return {
        "version": 1,
        "name": "enginetest",
        "model": {"name": "tiny_tp", "scale": 2, "width": 4},
        "data": {"eval": ["samples"], "eval_limit": 1},
        "eval": {"lr_size": [16, 16], "latency_runs": 1, "crops": 1},
        "stages": [
            {"type": "scale_tail", "factor": first},
            {"type": "count", "log": str(log), "fail_if_exists": str(tmp_path / "fail") if fail else "", "sleep": sleep},
            {"type": "scale_tail", "factor": factor},
        ],
    }


def _log(tmp_path: Path) -> list[str]:
    path = tmp_path / "log.txt"
    return path.read_text().split() if path.exists() else []


def test_run_writes_the_run_directory(registry: Registry, tmp_path: Path) -> None:
    result = run(_recipe(tmp_path), run_dir=tmp_path / "run", registry=registry, quiet=True)
    folder = tmp_path / "run"
    assert (folder / "recipe.yaml").is_file() and (folder / "state.json").is_file()
    resolved = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert resolved["stages"][0] == {"type": "scale_tail", "factor": 0.5}
    assert sorted(p.name for p in folder.glob("stage-*")) == ["stage-00-scale_tail", "stage-01-count", "stage-02-scale_tail"]
    metrics = json.loads((folder / "stage-02-scale_tail" / "metrics.json").read_text())
    assert metrics["stage"] == "3:scale_tail" and metrics["params"] == 3 * 4 * 9 + 4 + 4 * 12 * 9 + 12
    assert set(metrics["quality"]["samples"]) == {"psnr", "ssim"}
    assert result.report is not None and result.report.is_file()
    report = result.report.read_text()
    assert "quality_vs_latency.png" in report and (result.report.parent / "quality_vs_latency.png").is_file()
    assert [r["stage"] for r in result.records] == ["baseline", "1:scale_tail", "2:count", "3:scale_tail"]


def test_crash_in_stage_two_resumes_without_recomputing_stage_one(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "fail").touch()
    with pytest.raises(StageError, match=r'stage 2 \(count, plugin "tinytp"\) failed: RuntimeError: simulated crash'):
        run(_recipe(tmp_path, fail=True), run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert _log(tmp_path) == ["stage2"]
    assert (tmp_path / "run" / "stage-00-scale_tail" / "model.pt").is_file()
    stage1 = (tmp_path / "run" / "stage-00-scale_tail" / "model.pt").stat().st_mtime_ns

    (tmp_path / "fail").unlink()
    result = run(_recipe(tmp_path, fail=True), run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert result.resumed_stages == [0]
    assert _log(tmp_path) == ["stage2", "stage2"]
    assert (tmp_path / "run" / "stage-00-scale_tail" / "model.pt").stat().st_mtime_ns == stage1

    # unchanged recipe: everything is reused; changing stage 3 recomputes only stage 3
    again = run(_recipe(tmp_path, fail=True), run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert again.resumed_stages == [0, 1, 2]
    changed = run(_recipe(tmp_path, fail=True, factor=0.25), run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert changed.resumed_stages == [0, 1]
    assert torch.allclose(changed.model.tail.weight, again.model.tail.weight * 0.5)
    # changing stage 1 invalidates everything after it
    first = run(_recipe(tmp_path, fail=True, first=0.75), run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert first.resumed_stages == [] and _log(tmp_path) == ["stage2"] * 3


def test_sigkill_in_stage_two_resumes_from_stage_two(site: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, sleep=60)))
    env = dict(os.environ, PYTHONPATH=str(site))
    command = [sys.executable, "-m", "srcompress.cli", "--quiet", "run", str(recipe), "--run-dir", str(tmp_path / "run")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _log(tmp_path) != ["stage2"] and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _log(tmp_path) == ["stage2"]
    stage1 = tmp_path / "run" / "stage-00-scale_tail" / "model.pt"
    assert stage1.is_file() and not (tmp_path / "run" / "stage-01-count" / "model.pt").exists()
    mtime = stage1.stat().st_mtime_ns

    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, sleep=0)))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reused finished stage(s) 1" in done.stdout
    assert stage1.stat().st_mtime_ns == mtime and _log(tmp_path) == ["stage2", "stage2"]


def test_compress_a_users_own_module(registry: Registry, tmp_path: Path) -> None:
    user = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    result = compress(
        user, [{"type": "count", "log": str(tmp_path / "log.txt")}], scale=2,
        data={"eval": ["samples"], "eval_limit": 1}, eval={"lr_size": [16, 16], "latency_runs": 0, "crops": 0},
        run_dir=tmp_path / "c", registry=registry, quiet=True,
    )
    assert result.records[0]["params"] == 3 * 12 * 9 + 12
    again = compress(
        user, [{"type": "count", "log": str(tmp_path / "log.txt")}], scale=2,
        data={"eval": ["samples"], "eval_limit": 1}, eval={"lr_size": [16, 16], "latency_runs": 0, "crops": 0},
        run_dir=tmp_path / "c", registry=registry, quiet=True,
    )
    assert again.resumed_stages == [0] and _log(tmp_path) == ["stage1"]


def test_pruned_checkpoint_reloads_into_a_fresh_model(registry: Registry, tmp_path: Path) -> None:
    import torch_pruning as tp

    from srcompress.models import build_model
    from srcompress.recipe import make_converter
    from srcompress.recipe_types import ModelRef

    ref = make_converter(registry).structure({"name": "tiny_tp", "scale": 2, "width": 8}, ModelRef)
    model = build_model(ref, registry=registry)
    example = torch.rand(1, 3, 8, 8)
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[model.tail])
    pruner.step()
    assert model.head.out_channels == 4 and model.tail.in_channels == 4
    path = save_checkpoint(model, tmp_path / "m.pt", model_ref={"name": "tiny_tp"})
    fresh = build_model(ref, registry=registry)
    assert fresh.head.out_channels == 8
    load_checkpoint(path, fresh)
    assert fresh.head.weight.shape == (4, 3, 3, 3) and fresh.head.out_channels == 4
    assert torch.equal(fresh(example), model(example))


def test_a_traced_graph_stage_is_saved_as_pt2_and_resumed(registry: Registry, tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    recipe["stages"] = [{"type": "scale_tail", "factor": 0.5}, {"type": "trace"}, {"type": "count", "log": str(tmp_path / "log.txt")}]
    first = run(recipe, run_dir=tmp_path / "run", registry=registry, quiet=True)
    folder = tmp_path / "run" / "stage-01-trace"
    assert (folder / "model.pt2").is_file() and not (folder / "model.pt").exists()
    assert json.loads((folder / "model.json").read_text())["model"]["name"] == "tiny_tp"
    again = run(recipe, run_dir=tmp_path / "run", registry=registry, quiet=True)
    assert again.resumed_stages == [0, 1, 2]
    x = torch.rand(1, 3, 12, 10)
    assert torch.allclose(again.model(x), first.model(x), atol=1e-6)
    assert again.records[2]["params"] == first.records[1]["params"]
    # the CLI's deploy/bench load a run whose last stage is an exported graph (it has no eval())
    loaded = _load_model(argparse.Namespace(source=str(tmp_path / "run"), checkpoint=None, model=None), registry)
    assert torch.allclose(loaded(x), first.model(x), atol=1e-6)


def test_cli_backend_options_are_yaml_values_and_name_a_malformed_item() -> None:
    assert backend_options(["precision=int8", "threads=2", "spin=false", "rewrites=[]"]) == {
        "precision": "int8", "threads": 2, "spin": False, "rewrites": [],
    }  # fmt: skip
    with pytest.raises(SrcompressError, match=r"--option 'int8': expected KEY=VALUE, e.g. precision=int8"):
        backend_options(["int8"])
    with pytest.raises(SrcompressError, match=r"--option 'rewrites=\[a': the value is not a YAML scalar or list"):
        backend_options(["rewrites=[a"])


def test_stage_folders_are_the_finished_stages_in_order(tmp_path: Path) -> None:
    for folder, file in [("stage-01-quantize", "model.pt2"), ("stage-00-distill", "model.pt"), ("stage-02-prune", None)]:
        (tmp_path / folder / "work").mkdir(parents=True)  # stage-02: started, not finished
        if file:
            (tmp_path / folder / file).write_bytes(b"")
    assert [p.name for p in stage_folders(tmp_path)] == ["stage-00-distill", "stage-01-quantize"]
    assert [p.name for p in stage_folders(tmp_path, ("model.pt",))] == ["stage-00-distill"]
    assert stage_folders(tmp_path / "missing") == []
