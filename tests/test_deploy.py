"""srcompress.deploy: export forms, verification (with the diverging layer), deploy_model, bench, tables."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from srcompress.deploy import (
    GATE_STATISTIC,
    BenchRow,
    Issue,
    apply_export_forms,
    backend_config,
    bench_backends,
    deploy_model,
    diverging_layer,
    find_export_forms,
    format_issues,
    format_table,
    parse_lr_size,
    raise_for_issues,
    verification_inputs,
    verify,
)
from srcompress.errors import DeployError, SrcompressError
from srcompress.registry import Registry


class TinySR(nn.Module):
    """x2 SR net shaped like F2SRGAN's upsampler: conv, separable conv (dw + pw) -> PixelShuffle -> PReLU -> conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 32, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(8, init=0.1)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.act(self.shuffle(self.pw(self.dw(self.head(x))))))


class Doubling(nn.Module):
    """``irfft2(2 * rfft2(x))`` = 2x, with an FFT-free export form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(2 * torch.fft.rfft2(x, norm="ortho"), s=x.shape[-2:], norm="ortho")

    def export_form(self) -> nn.Module:
        return Scale(2.0)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class WithFourier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.unit = Doubling()
        self.inner = nn.Sequential(nn.Conv2d(3, 3, 1), Doubling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.unit(self.conv(x)))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_apply_export_forms_replaces_outermost_modules_in_a_copy() -> None:
    model = WithFourier()
    assert find_export_forms(model) == ["unit", "inner.1"]
    form = apply_export_forms(model)
    assert isinstance(form.unit, Scale) and isinstance(form.inner[1], Scale)
    assert isinstance(model.unit, Doubling), "the original model must stay untouched"
    x = torch.rand(1, 3, 8, 10)
    assert torch.allclose(form(x), model(x), atol=1e-5)
    assert apply_export_forms(model, enabled=False) is model
    plain = nn.Conv2d(3, 3, 1)
    assert apply_export_forms(plain) is plain
    assert isinstance(apply_export_forms(Doubling()), Scale)  # the root itself


def test_export_form_must_return_a_module() -> None:
    class Bad(nn.Module):
        def export_form(self) -> object:
            return "not a module"

    holder = nn.Sequential(Bad())
    with pytest.raises(DeployError, match=r"export_form\(\) of module '0' \(Bad\) returned str"):
        apply_export_forms(holder)


def test_verification_inputs_are_labelled_images_in_range() -> None:
    example = torch.rand(2, 3, 12, 20)
    inputs = verification_inputs(example)
    assert [label for label, _ in inputs] == ["example", "uniform", "astronaut"]
    for _, x in inputs:
        assert x.shape == (2, 3, 12, 20) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(inputs[2][1].std()) > 0.05  # a real photo, not a constant


def test_verify_passes_and_reports_errors(registry: Registry) -> None:
    model = TinySR().eval()
    entry = registry.get_backend("torch")
    deployed = entry.compile(model, torch.rand(1, 3, 12, 16), entry.config_cls(device="cpu"))
    result = verify(deployed, model, [torch.rand(1, 3, 12, 16), torch.rand(2, 3, 9, 7)], tolerance=1e-6)
    assert result.passed and result.max_abs == 0.0
    assert [label for label, _ in result.per_input] == ["input0", "input1"]


def test_verify_failure_names_max_error_and_the_diverging_layer(registry: Registry) -> None:
    model = TinySR().eval()
    entry = registry.get_backend("torch")
    deployed = entry.compile(model, torch.rand(1, 3, 12, 16), entry.config_cls(device="cpu"))
    with torch.no_grad():
        deployed.module.pw.weight.add_(0.05)  # a corrupted layer in the middle of the net
    with pytest.raises(DeployError, match=r"torch \(fp32\) output differs from torch by .* > tolerance 1e-05 .*first diverging layer 'pw'"):
        verify(deployed, model, verification_inputs(torch.rand(1, 3, 12, 16)), tolerance=1e-5)
    result = verify(deployed, model, [("x", torch.rand(1, 3, 12, 16))], tolerance=1e-5, raise_on_failure=False)
    assert not result.passed and result.max_abs > 1e-3 and result.worst_input == "x"
    assert result.worst_layer == "pw" and result.worst_layer_error > 1e-3
    assert "FAIL" in result.summary()


class _OnePixelOff:
    """A deployment whose output is the model's with one pixel 0.2 off (an int8 rounding flip)."""

    metadata = {"backend": "fake", "precision": "int8"}

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(lr).clone()
        out[0, 0, 0, 0] += 0.2
        return out


def test_verify_on_the_mean_tolerates_isolated_flips_but_names_a_real_mismatch() -> None:
    model = TinySR().eval()
    deployed = _OnePixelOff(model)
    x = torch.rand(1, 3, 12, 16)  # output 1x3x24x32: one pixel in 2304 is 0.2 off, mean 0.2 / 2304
    result = verify(deployed, model, [x], tolerance=0.03, statistic="mean")
    assert result.passed and result.max_abs == pytest.approx(0.2, abs=1e-6)
    assert result.mean_abs == pytest.approx(0.2 / 2304, rel=1e-4)
    assert result.summary().startswith("pass: mean |diff| 8.68e-05 (tolerance 0.03), max 0.2")
    with pytest.raises(DeployError, match=r"fake \(int8\) output differs from torch by 0.2 > tolerance 0.03"):
        verify(deployed, model, [x], tolerance=0.03, locate=False)
    with pytest.raises(DeployError, match=r"by a mean \|diff\| of 8.68e-05 > tolerance 1e-05 \(max 0.2 on input 'input0'\)"):
        verify(deployed, model, [x], tolerance=1e-5, statistic="mean", locate=False)
    assert GATE_STATISTIC == {"int8": "mean"}


def test_diverging_layer_is_where_the_relative_error_jumps() -> None:
    ref = {"a": torch.ones(4), "b": torch.ones(4) * 10, "c": torch.ones(4)}
    got = {"a": torch.ones(4) + 1e-6, "b": torch.ones(4) * 10 + 3.0, "c": torch.ones(4) + 0.5}
    assert diverging_layer(ref, got, ["a", "b", "c"]) == ("b", pytest.approx(3.0))
    assert diverging_layer(ref, dict(ref), ["a", "b"]) is None


def test_issue_text_and_raise_for_issues() -> None:
    error = Issue(severity="error", target="tensorrt", op="DFT", message="cannot parse", fix="use fft: fft_free", nodes=("n1", "n2", "n3", "n4"))
    warning = Issue(severity="warning", target="tensorrt", op="PRelu", message="slow", fix="none")
    assert str(error) == "error: tensorrt: DFT: cannot parse [n1, n2, n3, ... (4 in all)]; fix: use fft: fft_free"
    assert format_issues([warning, error]).splitlines()[0].startswith("error: tensorrt: DFT")
    assert format_issues([]) == "no issues"
    raise_for_issues([warning], "x")  # warnings never raise
    with pytest.raises(DeployError, match=r"^check: error: tensorrt: DFT: cannot parse .* \(and 1 more pre-flight error\(s\)\)$"):
        raise_for_issues([error, error, warning], "check")
    with pytest.raises(ValueError):
        Issue(severity="fatal", target="t", op="o", message="m", fix="f")


def test_backend_config_structures_and_names_bad_keys(registry: Registry) -> None:
    entry = registry.get_backend("onnx")
    config = backend_config(entry, {"precision": "fp16", "rewrites": ["d2s_dcr"], "threads": 2}, registry)
    assert (config.precision, config.rewrites, config.threads) == ("fp16", ("d2s_dcr",), 2)
    assert backend_config(entry, config, registry) is config
    with pytest.raises(DeployError, match=r"unknown option of backend 'onnx' 'precison'; did you mean 'precision'\?"):
        backend_config(entry, {"precison": "fp16"}, registry)
    with pytest.raises(DeployError, match=r"must be one of 'fp32', 'fp16', 'int8' \(got 'int4'\)"):
        backend_config(entry, {"precision": "int4"}, registry)
    with pytest.raises(DeployError, match=r"unknown rewrite\(s\) \['d2s'\]"):
        backend_config(entry, {"rewrites": ["d2s"]}, registry)


def test_deploy_model_writes_artifact_and_verification(tmp_path, registry: Registry) -> None:
    model = TinySR().eval()
    deployed, result = deploy_model(model, "torch", {"device": "cpu", "precision": "bf16"}, torch.rand(1, 3, 12, 16), tmp_path, registry)
    assert result.passed and 0 < result.max_abs <= registry.get_backend("torch").tolerance["bf16"]
    report = json.loads((tmp_path / "model_torch_bf16.verify.json").read_text())
    assert report["artifact"] == "model_torch_bf16.pt2" and report["verify"]["passed"] is True
    assert report["metadata"]["precision"] == "bf16" and "torch" in report["metadata"]["versions"]
    assert (tmp_path / "model_torch_bf16.pt2").stat().st_size > 0 and deployed.metadata["path"] == str(tmp_path / "model_torch_bf16.pt2")
    with pytest.raises(DeployError, match=r"output differs from torch"):
        deploy_model(model, "torch", {"device": "cpu", "precision": "bf16"}, torch.rand(1, 3, 12, 16), tmp_path, registry, tolerance=1e-7)


def test_bench_backends_rows_and_markdown_table(registry: Registry) -> None:
    from srcompress.backends.onnx import export_onnx

    model = TinySR().eval()
    graph = export_onnx(model, torch.rand(1, 3, 12, 16))  # exported once, compiled by two configurations
    rows = bench_backends(
        model,
        [
            ("torch", {"device": "cpu"}),
            ("onnx", {"provider": "cpu"}, "", graph),
            ("onnx", {"provider": "cpu", "rewrites": []}, "onnx, no rewrites", graph),
        ],
        [(12, 16), (8, 20)],
        threads=1,
        runs=2,
        warmup=1,
        registry=registry,
    )
    assert [(r.label, r.lr_size) for r in rows] == [
        ("torch (device=cpu)", (12, 16)),
        ("onnx (provider=cpu)", (12, 16)),
        ("onnx, no rewrites", (12, 16)),
        ("torch (device=cpu)", (8, 20)),
        ("onnx (provider=cpu)", (8, 20)),
        ("onnx, no rewrites", (8, 20)),
    ]
    assert all(r.median_ms > 0 and r.p90_ms >= r.median_ms * 0.999 for r in rows)
    assert rows[0].speedup == pytest.approx(1.0) and rows[3].speedup == pytest.approx(1.0)
    assert rows[0].max_abs_err == 0.0 and all(r.max_abs_err < 1e-4 for r in rows)
    table = format_table(rows).splitlines()
    assert table[0].startswith("| LR (H x W) | configuration | precision | device | median ms |")
    assert len(table) == 2 + len(rows) and "| 8 x 20 | onnx, no rewrites | fp32 | cpu |" in table[-1]
    one_by_one = bench_backends(model, [("torch", {"device": "cpu"}), ("torch", {"device": "cpu", "channels_last": True})], [(8, 8), (6, 10)],
                                runs=2, warmup=1, registry=registry, interleave=False)  # fmt: skip
    assert [(r.label, r.lr_size) for r in one_by_one] == [
        ("torch (device=cpu)", (8, 8)), ("torch (device=cpu, channels_last=True)", (8, 8)),
        ("torch (device=cpu)", (6, 10)), ("torch (device=cpu, channels_last=True)", (6, 10)),
    ]  # fmt: skip
    assert all(r.median_ms > 0 and r.max_abs_err < 1e-5 for r in one_by_one)
    with pytest.raises(DeployError, match=r"a configuration is \(backend, options\[, label\[, source\]\]\)"):
        bench_backends(model, [("torch",)], [(8, 8)], registry=registry)


def test_format_table_of_given_rows() -> None:
    row = BenchRow(label="onnx", backend="onnx", precision="fp32", lr_size=(180, 320), median_ms=512.34, p90_ms=530.0, max_abs_err=2e-6, speedup=6.2)
    assert format_table([row]).splitlines()[2] == "| 180 x 320 | onnx | fp32 | cpu | 512.3 | 530.0 | 6.20x | 2e-06 |"


def test_parse_lr_size_reads_height_then_width() -> None:
    assert parse_lr_size("180x320") == (180, 320)
    assert parse_lr_size("64X48") == (64, 48)


@pytest.mark.parametrize("text", ["180", "180x", "0x320", "-4x8", "axb", "1x2x3"])
def test_parse_lr_size_names_the_bad_text_and_the_form(text: str) -> None:
    with pytest.raises(SrcompressError, match=rf"size '{text}': expected HxW with two positive integers, e.g. 180x320"):
        parse_lr_size(text)
    with pytest.raises(ValueError):  # argparse's type= turns it into a usage error
        parse_lr_size(text)
