"""srcompress.weights: resolution order, SHA-256 checks, the restricted unpickler, clear load errors."""

from __future__ import annotations

import os
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from srcompress.download import DownloadError
from srcompress.entries import WeightsEntry
from srcompress.errors import CheckpointError
from srcompress.paths import cache_dir
from srcompress.weights import (
    OpaqueObject,
    extract_state_dict,
    load_checkpoint_file,
    load_state_into,
    resolve_weights,
    restricted_load,
    select_weights,
)

SHA_4X = "0119b8996e7faf407a40fc19beaa9250b196393b6ed22166127200d350556708"
SHA_LIGHT = "27bce592d2608fb61a133d61fb889aa741dc66ec982a34679da28c4f61e377e9"


def _entry(filename: str, sha256: str, url: str = "https://example.invalid/weights.pt") -> WeightsEntry:
    return WeightsEntry(tag="official", scale=4, filename=filename, url=url, sha256=sha256)


# ------------------------------------------------------------------------------------ resolution
def test_explicit_path_is_returned_and_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    file = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, file)
    assert resolve_weights(str(file)) == file
    with pytest.raises(CheckpointError) as info:
        resolve_weights(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(info.value) and "\n" not in str(info.value)


def test_entry_found_in_weights_root_is_verified(weights_root: Path) -> None:
    assert resolve_weights(_entry("F2SRGAN_4x.pt", SHA_4X)) == weights_root / "F2SRGAN_4x.pt"


def test_cache_comes_before_weights_root(weights_root: Path) -> None:
    cached = cache_dir("weights") / "F2SRGAN_4x.pt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_root / "F2SRGAN_4x.pt", cached)
    try:
        assert resolve_weights(_entry("F2SRGAN_4x.pt", SHA_4X)) == cached
    finally:
        cached.unlink()


def test_sha_mismatch_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRCOMPRESS_WEIGHTS", str(tmp_path))
    (tmp_path / "F2SRGAN_4x.pt").write_bytes(b"not the published file")
    with pytest.raises(CheckpointError) as info:
        resolve_weights(_entry("F2SRGAN_4x.pt", SHA_4X))
    message = str(info.value)
    assert "SHA-256 mismatch" in message and str(tmp_path / "F2SRGAN_4x.pt") in message and "\n" not in message


def test_download_is_sha_checked_and_lands_in_cache(weights_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRCOMPRESS_WEIGHTS", str(tmp_path / "empty"))
    url = (weights_root / "F2SRGAN_4x.pt").as_uri()  # file:// URL: a real urllib download, offline
    path = resolve_weights(_entry("F2SRGAN_4x.pt", SHA_4X, url=url))
    assert path == cache_dir("weights") / "F2SRGAN_4x.pt" and path.stat().st_size == 2_712_557
    path.unlink()
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        resolve_weights(_entry("F2SRGAN_4x.pt", "0" * 64, url=url))
    assert not (cache_dir("weights") / "F2SRGAN_4x.pt").exists()


def test_offline_error_says_where_to_put_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRCOMPRESS_WEIGHTS", str(tmp_path))
    missing = (tmp_path / "server" / "F2SRGAN_4x.pt").as_uri()
    with pytest.raises(DownloadError) as info:
        resolve_weights(_entry("F2SRGAN_4x.pt", SHA_4X, url=missing))
    assert "put F2SRGAN_4x.pt into $SRCOMPRESS_WEIGHTS or pass weights: /path/to/file" in str(info.value)


def test_user_url_needs_a_checksum_and_is_cached_by_it(weights_root: Path) -> None:
    url = (weights_root / "F2SRGAN_4x.pt").as_uri()
    with pytest.raises(CheckpointError, match=r"append #sha256="):
        resolve_weights(url)
    path = resolve_weights(f"{url}#sha256={SHA_4X}")
    assert path.name == "F2SRGAN_4x.pt" and SHA_4X[:16] in str(path)
    assert resolve_weights(f"{url}#sha256={SHA_4X}") == path  # second time: from the cache


def test_select_weights_lists_what_exists() -> None:
    entries = (_entry("a.pt", SHA_4X),)
    assert select_weights(entries, "official", 4, "f2srgan").filename == "a.pt"
    with pytest.raises(CheckpointError, match=r"no published weights 'official' for x2 \(available: official \(x4\)\)"):
        select_weights(entries, "official", 2, "f2srgan")


# ---------------------------------------------------------------------------------------- reading
def test_plain_checkpoint_goes_through_weights_only_load(weights_root: Path) -> None:
    ckpt = load_checkpoint_file(weights_root / "F2SRGAN_4x.pt")
    state = extract_state_dict(ckpt)
    assert set(ckpt) == {"model", "opti"} and len(state) == 294
    assert sum(v.numel() for v in state.values()) == 202_233


def test_restricted_unpickler_reads_light_f2srgan_without_importing_its_classes(weights_root: Path) -> None:
    path = weights_root / "LightF2SRGAN_x4.pt"
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # torch refuses: it pickles __main__.Generator_S
    ckpt = load_checkpoint_file(path)
    deploy = ckpt["deploy"]
    assert isinstance(deploy, OpaqueObject) and deploy.qualname == "__main__.Generator_S"
    assert not hasattr(sys.modules["__main__"], "Generator_S")
    assert isinstance(deploy.state["_modules"], OrderedDict) and "residual1" in deploy.state["_modules"]
    state = extract_state_dict(ckpt, path)
    assert len(state) == 134 and sum(v.numel() for v in state.values()) == 77_905
    assert tuple(state["residual1.0.block1.0.1.weight"].shape) == (1, 64, 1, 1)
    # tensors shared between 'deploy' and 'model' come from the same storage bytes
    deploy_w = deploy.state["_modules"]["final_conv"].state["_modules"]["1"].state["_parameters"]["weight"]
    assert torch.equal(deploy_w, state["final_conv.1.weight"])
    # plain attributes of the pickled modules are kept: the released Light F2SRGAN ran without fake-quant
    prelu = deploy.state["_modules"]["residual1"].state["_modules"]["0"].state["_modules"]["block1"].state["_modules"]["1"]
    assert prelu.qualname == "__main__.QuantActPreLu" and prelu.state["full_precision_flag"] is False


class _Boom:
    """Pickles as a call of os.system: a load that runs code from the file would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[override]
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[override]
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def test_restricted_unpickler_never_runs_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.arange(6.0).view(2, 3)}, "x": _Boom(marker), "y": _Eval(marker)}, path)
    ckpt = load_checkpoint_file(path)
    assert not marker.exists()
    assert isinstance(ckpt["x"], OpaqueObject) and ckpt["x"].qualname in ("posix.system", "os.system", "nt.system")
    assert ckpt["x"].args == (f"touch {marker}",)
    assert ckpt["y"].qualname in ("builtins.eval", "__builtin__.eval")  # protocol 2 writes __builtin__
    assert torch.equal(extract_state_dict(ckpt)["w"], torch.arange(6.0).view(2, 3))
    assert not marker.exists()


def test_truncated_file_is_a_one_line_error_naming_it(weights_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "F2SRGAN_4x.pt"
    bad.write_bytes((weights_root / "F2SRGAN_4x.pt").read_bytes()[:100_000])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: unreadable checkpoint") and "\n" not in message
    with pytest.raises(CheckpointError, match="truncated"):
        restricted_load(bad)


def test_garbage_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_restricted_loader_detects_a_storage_of_the_wrong_size(tmp_path: Path) -> None:
    import zipfile

    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(4)}, "x": _Boom(tmp_path / "m")}, good)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:-4] if "/data/" in item.filename else data)
    with pytest.raises(CheckpointError, match=r"bad\.pt: corrupted checkpoint .*holds 12 bytes, expected 16"):
        restricted_load(bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt: unreadable checkpoint"):
        load_checkpoint_file(bad)


def test_extract_state_dict_errors_and_module_prefix(tmp_path: Path) -> None:
    assert list(extract_state_dict({"state_dict": {"module.a": torch.zeros(1)}})) == ["a"]
    with pytest.raises(CheckpointError, match=r"x\.pt: no state dict found \(top-level keys: epoch, opt\)"):
        extract_state_dict({"epoch": 3, "opt": {}}, tmp_path / "x.pt")


def test_wrong_architecture_lists_keys_and_shapes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 3, 1))
    state = {"0.weight": torch.zeros(16, 3, 3, 3), "0.bias": torch.zeros(16), "2.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        load_state_into(model, state, "w.pt")
    message = str(info.value)
    assert message == (
        "w.pt: state dict does not fit Sequential (missing 2: 1.weight, 1.bias; unexpected 1: 2.weight; "
        "shape mismatch 2: 0.weight (16, 3, 3, 3) vs model (8, 3, 3, 3), 0.bias (16,) vs model (8,)); "
        "is it for another model, scale or options?"
    )


def test_use_local_copies_sets_only_unset_variables_for_existing_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srcompress.paths import use_local_copies

    (tmp_path / "data").mkdir()  # no weights/ folder
    monkeypatch.delenv("SRCOMPRESS_DATA", raising=False)
    monkeypatch.delenv("SRCOMPRESS_WEIGHTS", raising=False)
    use_local_copies(tmp_path)
    assert os.environ["SRCOMPRESS_DATA"] == str(tmp_path / "data") and "SRCOMPRESS_WEIGHTS" not in os.environ
    monkeypatch.setenv("SRCOMPRESS_DATA", "/elsewhere")
    use_local_copies(tmp_path)
    assert os.environ["SRCOMPRESS_DATA"] == "/elsewhere"  # a user's setting wins
