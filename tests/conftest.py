"""Test configuration: data and weights come from ../shared when it exists (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from srcompress.paths import use_local_copies

REPO = Path(__file__).resolve().parents[1]
use_local_copies(REPO.parent / "shared")

# One intra-op thread: tests use tiny tensors, and CI runs subprocesses and DataLoader workers beside
# the main process on 2 cores (two threads per process oversubscribe them).
torch.set_num_threads(1)


def _shared(sub: str) -> Path | None:
    root = os.environ.get("SRCOMPRESS_DATA" if sub == "data" else "SRCOMPRESS_WEIGHTS")
    return Path(root) if root and Path(root).is_dir() else None


@pytest.fixture
def data_root() -> Path:
    """The shared data folder; skips the test (naming the missing folder) when it is absent."""
    root = _shared("data")
    if root is None:
        pytest.skip("needs ../shared/data (or SRCOMPRESS_DATA) with Set5/Set14/T91")
    return root


@pytest.fixture
def weights_root() -> Path:
    """The shared weights folder; skips the test (naming the missing folder) when it is absent."""
    root = _shared("weights")
    if root is None:
        pytest.skip("needs ../shared/weights (or SRCOMPRESS_WEIGHTS) with the published F2SRGAN checkpoints")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads and caches of a test never touch the user's cache."""
    monkeypatch.setenv("SRCOMPRESS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
