"""The run directory: resolved recipe, each finished stage's checkpoint and metrics, resumable.

Layout::

    runs/<name>/
      recipe.yaml                 the resolved recipe (every default written out)
      state.json                  finished stages with their fingerprints
      baseline/metrics.json
      stage-00-<type>/model.pt    checkpoint (weights_only-loadable), metrics.json, work/ (mid-stage)
      deploy/<backend>/           deployed artifacts
      report/                     report.md, report.json, PNG plots

A stage is reused only while its fingerprint (model, training data, seed and every stage up to it)
is unchanged; the first changed stage and all after it are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["STAGE_MODEL_FILES", "RunDir", "atomic_write_text", "fingerprint", "stage_folders"]

#: What a finished stage folder holds: ``model.pt`` (a float checkpoint) or ``model.pt2`` (an exported
#: graph, e.g. a PT2E-quantized model).
STAGE_MODEL_FILES = ("model.pt", "model.pt2")


def stage_folders(run_dir: str | os.PathLike[str], files: tuple[str, ...] = STAGE_MODEL_FILES) -> list[Path]:
    """The ``stage-XX-<type>`` folders of ``run_dir`` holding one of ``files``, in stage order."""
    return sorted(p for p in Path(run_dir).glob("stage-*") if any((p / name).is_file() for name in files))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def fingerprint(*parts: Any) -> str:
    """A stable SHA-256 of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class RunDir:
    """A run directory on disk; every write is atomic."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._state_path = self.path / "state.json"

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        if not self._state_path.is_file():
            return {"stages": {}}
        try:
            return json.loads(self._state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {"stages": {}}  # an unreadable state means nothing is reusable

    def _save_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self._state_path, json.dumps(state, indent=2, sort_keys=True))

    def write_json(self, relative: str, data: Any) -> Path:
        return atomic_write_text(self.path / relative, json.dumps(data, indent=2, sort_keys=True, default=str))

    def read_json(self, relative: str) -> Any | None:
        path = self.path / relative
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    # ------------------------------------------------------------------ stages
    def stage_dir(self, index: int, kind: str) -> Path:
        return self.path / f"stage-{index:02d}-{kind}"

    def finished(self, key: str, fp: str) -> dict[str, Any] | None:
        """The record of a finished step (``baseline``, ``stage-00``...) if its fingerprint matches."""
        record = self._state()["stages"].get(key)
        if record and record.get("fingerprint") == fp:
            return record
        return None

    def mark_finished(self, key: str, fp: str, **info: Any) -> None:
        state = self._state()
        state["stages"][key] = {"fingerprint": fp, **info}
        self._save_state(state)

    def invalidate_from(self, index: int) -> None:
        """Forget stage ``index`` and every later one (their folders are removed)."""
        state = self._state()
        for key in list(state["stages"]):
            if key.startswith("stage-") and int(key.split("-")[1]) >= index:
                del state["stages"][key]
        self._save_state(state)
        for folder in self.path.glob("stage-*"):
            if folder.is_dir() and int(folder.name.split("-")[1]) >= index:
                shutil.rmtree(folder, ignore_errors=True)
