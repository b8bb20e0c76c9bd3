"""Published weights: find them, verify them, read them safely, load them with clear errors.

Resolution (:func:`resolve_weights`), first hit wins:

1. an explicit path (``weights: /path/to/file.pt``);
2. the cache, ``srcompress.paths.cache_dir("weights") / <published file name>``;
3. the folder named by ``SRCOMPRESS_WEIGHTS``, file under its published name;
4. a download from the published URL, checked against its SHA-256.

Files found for a known :class:`~srcompress.entries.WeightsEntry` (steps 2-3) are SHA-256-verified.
A user URL must carry its checksum: ``https://host/file.pt#sha256=<64 hex digits>``.

Reading (:func:`load_checkpoint_file`) uses ``torch.load(weights_only=True)``. Only a file that
torch refuses because it pickles Python objects (e.g. a whole ``nn.Module``) is read again with
:func:`restricted_load`, an unpickler that never imports or runs anything named in the file: it
rebuilds tensors, ordered dicts and plain containers and turns every other object into an inert
:class:`OpaqueObject` that only records its name, arguments and state.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import urllib.parse
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcompress.download import download, sha256_of
from srcompress.entries import ModelEntry, WeightsEntry
from srcompress.errors import CheckpointError
from srcompress.paths import cache_dir, weights_root

__all__ = [
    "OpaqueObject",
    "build_pretrained",
    "extract_state_dict",
    "load_checkpoint_file",
    "load_state_into",
    "resolve_weights",
    "restricted_load",
    "select_weights",
    "state_dict_mismatch",
]

_SHA_FRAGMENT = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_STATE_DICT_KEYS = ("model", "state_dict", "params_ema", "params", "generator", "netG", "net")

# (path, size, mtime_ns) -> sha256 already verified in this process; avoids re-hashing per build
_verified: dict[tuple[str, int, int], str] = {}


# ------------------------------------------------------------------------------------- resolution
def resolve_weights(source: WeightsEntry | str | os.PathLike[str]) -> Path:
    """The local path of a checkpoint, downloading (SHA-256-checked) when needed.

    :param source: a :class:`WeightsEntry` (published file: cache, then ``$SRCOMPRESS_WEIGHTS``,
        then its URL), a URL ``https://.../file.pt#sha256=<hex>`` (downloaded into the cache), or a
        path to a local file (returned as is).
    :raises CheckpointError: a missing file, a URL without ``#sha256=``, a SHA-256 mismatch.
    :raises srcompress.download.DownloadError: the download failed (the message says how to
        provide the file offline).
    """
    if isinstance(source, WeightsEntry):
        return _resolve_entry(source)
    text = os.fspath(source)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return _resolve_url(text)
    path = Path(text).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise CheckpointError(
            f"weights file {what}: {path}; pass an existing checkpoint file, a published tag "
            f"(e.g. 'official') or a URL ending in #sha256=<hex>"
        )
    return path


def _resolve_entry(entry: WeightsEntry) -> Path:
    candidates = [cache_dir("weights") / entry.filename]
    root = weights_root()
    if root is not None:
        candidates.append(root / entry.filename)
    for path in candidates:
        if path.is_file():
            _verify(path, entry.sha256)
            return path
    hint = (
        f"put {entry.filename} into $SRCOMPRESS_WEIGHTS or pass weights: /path/to/file "
        f"(published at {entry.url})"
    )
    return download(entry.url, cache_dir("weights") / entry.filename, entry.sha256, offline_hint=hint)


def _resolve_url(url: str) -> Path:
    parsed = urllib.parse.urlsplit(url)
    match = _SHA_FRAGMENT.match(parsed.fragment)
    if match is None:
        raise CheckpointError(
            f"weights URL {url} has no checksum; append #sha256=<64 hex digits> so the download can be verified"
        )
    sha = match.group(1).lower()
    bare = urllib.parse.urlunsplit(parsed._replace(fragment=""))
    name = Path(urllib.parse.unquote(parsed.path)).name or "weights.pt"
    dest = cache_dir("weights") / "url" / sha[:16] / name
    if dest.is_file():
        _verify(dest, sha)
        return dest
    hint = f"download it yourself, check its SHA-256 is {sha}, and pass weights: /path/to/{name}"
    return download(bare, dest, sha, offline_hint=hint)


def _verify(path: Path, sha256: str) -> None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    actual = _verified.get(key) or sha256_of(path)
    if actual != sha256.lower():
        raise CheckpointError(
            f"{path}: SHA-256 mismatch (expected {sha256}, got {actual}); the file is corrupted or "
            f"not the published one: delete it or replace it with the published file"
        )
    _verified[key] = actual


def select_weights(weights: Sequence[WeightsEntry], tag: str, scale: int, model: str) -> WeightsEntry:
    """The entry of ``weights`` with ``tag`` for ``scale``; the error lists what exists."""
    for entry in weights:
        if entry.tag == tag and entry.scale == scale:
            return entry
    known = ", ".join(f"{w.tag} (x{w.scale})" for w in weights) or "none"
    raise CheckpointError(f"model '{model}' has no published weights '{tag}' for x{scale} (available: {known})")


# ---------------------------------------------------------------------------------------- reading
def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file into a dict without ever running code from it.

    ``torch.load(weights_only=True)`` first; a file it refuses because of pickled Python objects
    is read with :func:`restricted_load` (those objects become :class:`OpaqueObject`). Tensors are
    on the CPU.

    :raises CheckpointError: naming the file, if it is missing, truncated, corrupted or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refused:
        try:
            obj = restricted_load(path)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"{path}: unreadable checkpoint ({_first_line(refused)}; restricted reader: "
                f"{type(exc).__name__}: {exc}); the file is corrupted or not a torch checkpoint"
            ) from exc
    except Exception as exc:  # zip reader / EOF / anything torch raises on a damaged file
        raise CheckpointError(
            f"{path}: unreadable checkpoint, truncated or corrupted ({type(exc).__name__}: "
            f"{_first_line(exc)}); delete it and download it again"
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict (a state dict or {{'model': state_dict}}), got {type(obj).__name__}")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class OpaqueObject:
    """An object from a pickle whose class was NOT imported: only its name and data are kept.

    ``qualname`` is the pickled global (``"__main__.Generator_S"``), ``args`` the constructor
    arguments, ``state`` what ``__setstate__`` would have received (for an ``nn.Module``: its
    ``__dict__``, with ``_parameters`` / ``_modules`` as ordered dicts), ``items`` anything
    appended or set as items.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        obj = super().__new__(cls)
        obj.args = args
        obj.kwargs = kwargs
        obj.state = None
        obj.items = []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): record only
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


def _opaque_class(module: str, name: str) -> type[OpaqueObject]:
    label = re.sub(r"\W", "_", name) or "Opaque"
    return type(label, (OpaqueObject,), {"qualname": f"{module}.{name}", "__module__": __name__})


class _Storage:
    """Marker for a pickled storage type (``torch.FloatStorage``): only its dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _storage_dtypes() -> dict[str, torch.dtype]:
    names = {
        "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
        "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
        "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
    }
    return names


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_rest: Any, **_kw: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise ValueError("tensor without storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset)).clone()


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func in (_rebuild_tensor, _rebuild_parameter) and new_type in (torch.Tensor, nn.Parameter):
        return func(*args)
    return _opaque_class("torch._tensor", "_rebuild_from_type_v2")(func, new_type, args, state)


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise ValueError("unsupported bytes encoding in pickle")
    return text.encode(encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("_codecs", "encode"): _encode,
    **{(mod, name): obj for mod in ("builtins", "__builtin__") for name, obj in {
        "set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray,
        "slice": slice,
    }.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of a torch zip checkpoint that imports nothing named in the file."""

    def __init__(self, handle: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(handle)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.storage"):
            dtypes = _storage_dtypes()
            if name in dtypes:
                return _Storage(dtypes[name])
            if isinstance(getattr(torch, name, None), torch.dtype):  # e.g. torch.float32
                return getattr(torch, name)
        return _opaque_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ValueError(f"unsupported persistent id {pid!r:.60}")
        _, kind, key, _location, numel = pid[:5]
        dtype = kind.dtype if isinstance(kind, _Storage) else kind if isinstance(kind, torch.dtype) else None
        if dtype is None:
            raise ValueError(f"unsupported storage type {kind!r:.60}")
        key = str(key)
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise ValueError(f"storage {key} holds {len(raw)} bytes, expected {int(numel) * itemsize}")
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = flat
        return self._storages[key]


def restricted_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle a torch zip checkpoint without importing or running anything named in it.

    Tensors, ``OrderedDict``, dicts, lists, tuples, sets and primitives are rebuilt; every other
    pickled class or function (``__main__.Generator_S``, ``os.system``, ``builtins.getattr``, ...)
    becomes an inert :class:`OpaqueObject` recording its name and data. Tensors land on the CPU.

    :raises CheckpointError: the file is not a readable torch zip checkpoint.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a torch zip checkpoint, or truncated ({exc})") from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: torch zip checkpoint without a single <name>/data.pkl")
        prefix = pickles[0].split("/")[0]
        order = f"{prefix}/byteorder"
        if order in archive.namelist() and archive.read(order).strip() not in (b"", b"little"):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        with archive.open(pickles[0]) as handle:
            try:
                return _RestrictedUnpickler(handle, archive, prefix).load()
            except (pickle.UnpicklingError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
                raise CheckpointError(f"{path}: corrupted checkpoint ({type(exc).__name__}: {_first_line(exc)})") from exc


# -------------------------------------------------------------------------------- state dicts
def extract_state_dict(checkpoint: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor state dict inside a checkpoint dict.

    A dict of tensors is returned as is; otherwise the first of ``model``, ``state_dict``,
    ``params_ema``, ``params``, ``generator``, ``netG``, ``net`` holding one. A ``module.`` prefix
    (DataParallel) is removed.

    :raises CheckpointError: naming ``path`` and the top-level keys when none holds a state dict.
    """
    candidates = [checkpoint] + [checkpoint[k] for k in _STATE_DICT_KEYS if k in checkpoint]
    for cand in candidates:
        if isinstance(cand, Mapping) and cand and all(isinstance(v, torch.Tensor) for v in cand.values()):
            state = {str(k): v for k, v in cand.items()}
            if all(k.startswith("module.") for k in state):
                state = {k[len("module."):]: v for k, v in state.items()}
            return state
    keys = ", ".join(map(str, list(checkpoint)[:8]))
    raise CheckpointError(f"{path}: no state dict found (top-level keys: {keys}); expected a dict of tensors or one under 'model'")


def state_dict_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 4) -> str:
    """A one-line description of how ``state`` differs from ``model.state_dict()``; "" if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f", ... (+{len(items) - limit})" if len(items) > limit else ""
            parts.append(f"{label} {len(items)}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str] = "checkpoint") -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` with a one-line error naming the file.

    :raises CheckpointError: ``"<path>: state dict does not fit <Class> (missing 2: a, b; unexpected
        1: c; shape mismatch 1: d (16,) vs model (32,)); is it for another model, scale or options?"``
    """
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{path}: state dict does not fit {type(model).__name__} ({problem}); "
            f"is it for another model, scale or options?"
        )
    model.load_state_dict(dict(state), strict=True)
    return model


# ---------------------------------------------------------------------------- build + load
def build_pretrained(
    entry: ModelEntry,
    scale: int,
    weights: WeightsEntry | str | os.PathLike[str] | None = "official",
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``entry`` at ``scale`` and load its weights; the model is returned in eval mode.

    :param weights: a tag of ``entry.weights`` (e.g. ``"official"``), a :class:`WeightsEntry`, a
        path, a URL with ``#sha256=``, or None (random init, train mode).
    :param options: option overrides. A published checkpoint's own options (``WeightsEntry.options``)
        replace the class defaults; explicit ``options`` win over both.
    """
    published: WeightsEntry | None = None
    if isinstance(weights, WeightsEntry):
        published = weights
    elif isinstance(weights, str) and _looks_like_tag(weights):
        published = select_weights(entry.weights, weights, scale, entry.name)
    merged = {**(dict(published.options) if published else {}), **dict(options or {})}
    model = entry.build(scale, entry.options_cls(**merged))
    if weights is None:
        return model
    path = resolve_weights(published if published is not None else weights)
    if entry.load_weights is not None:
        entry.load_weights(model, path)
    else:
        load_state_into(model, extract_state_dict(load_checkpoint_file(path), path), path)
    return model.eval()


def _looks_like_tag(text: str) -> bool:
    """A bare name (no path separator, suffix or scheme) that is not an existing file."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+", text)) and not Path(text).exists()
