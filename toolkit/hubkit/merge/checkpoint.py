"""Safetensors checkpoints read lazily and written tensor by tensor.

A merge must never hold a whole model: headers are read up front (names, shapes, dtypes and
byte ranges, so every mismatch is found before anything is written), tensors are read one at a
time, each through its own memory map, and written the moment they are made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import read_json, write_json
from ..errors import HubkitError, InputNotFound

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CONFIG = "config.json"
# Non-weight files a merged model needs to load and generate like its source.
MODEL_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """Bytes in a size like ``2GB``, ``500MiB`` or ``100000`` (the units transformers uses)."""
    match = _SIZE.match(text)
    if not match:
        raise HubkitError(f"--max-shard-size {text!r}: expected a size such as 2GB or 500MB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is, from the safetensors header alone."""

    file: str
    shape: tuple[int, ...]
    dtype: str
    start: int  # byte offset of its data in ``file``
    nbytes: int


def _open(path: Path):
    """``safe_open`` a file, turning a corrupt or truncated one into a one-line error."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, framework="pt")
    except FileNotFoundError:
        raise HubkitError(f"{path}: shard missing") from None
    except (SafetensorError, OSError) as exc:
        raise HubkitError(f"{path}: not a readable safetensors file ({exc})") from None


class Checkpoint:
    """A model folder's safetensors weights (one file or an indexed set of shards).

    ``name`` is how errors refer to the model (its Hub id or the path the user gave).
    """

    def __init__(self, folder: str | os.PathLike[str], name: str | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or str(folder)
        self.files, self.tensors = self._read_headers()

    def _weight_map(self) -> dict[str, str]:
        index = self.folder / INDEX
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise HubkitError(f"{index}: no weight_map")
            return weight_map
        if (self.folder / SINGLE).is_file():
            return {}
        if not self.folder.is_dir():
            raise InputNotFound(f"{self.name}: model folder {self.folder} not found")
        found = (
            "only .bin weights (convert them to safetensors)" if any(self.folder.glob("*.bin")) else "none"
        )
        raise HubkitError(f"{self.name}: no safetensors weights in {self.folder} ({found})")

    def _read_headers(self) -> tuple[list[str], dict[str, TensorInfo]]:
        weight_map = self._weight_map()
        files = sorted(set(weight_map.values())) if weight_map else [SINGLE]
        for file in files:
            if not (self.folder / file).is_file():
                raise HubkitError(f"{self.name}: shard {file} listed in {INDEX} is missing")
        tensors: dict[str, TensorInfo] = {}
        for file in files:
            with _open(self.folder / file):  # validates the header against the file
                pass
            with open(self.folder / file, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            for key, entry in header.items():
                if key != "__metadata__":
                    start, end = entry["data_offsets"]
                    shape = tuple(entry["shape"])
                    tensors[key] = TensorInfo(file, shape, entry["dtype"], 8 + size + start, end - start)
        for key, file in weight_map.items():
            if tensors.get(key) is None or tensors[key].file != file:
                raise HubkitError(f"{self.name}: tensor {key} listed in {INDEX} is not in {file}")
        return files, tensors

    def get(self, name: str):
        """One tensor, a read-only view of its own memory map of its file (copy before writing).

        All tensors of one ``safe_open`` handle share one map, so one held tensor would keep
        every page of the file read so far resident; with a handle per tensor, only that
        tensor's pages are, and only until it is dropped.
        """
        with _open(self.folder / self.tensors[name].file) as handle:
            return handle.get_tensor(name)

    def names_in(self, file: str) -> list[str]:
        """The tensors stored in one of this checkpoint's files."""
        return [name for name, info in self.tensors.items() if info.file == file]

    def config(self) -> dict[str, Any]:
        """The model's config.json (required: it is what makes the folder loadable)."""
        path = self.folder / CONFIG
        if not path.is_file():
            raise HubkitError(f"{self.name}: {CONFIG} missing in {self.folder}")
        return read_json(path)


# safetensors' dtype names in the order ``save_file`` lays tensors out (widest first, which
# keeps every tensor aligned to its element size), with the torch dtype each stands for.
_DTYPES = {
    "U64": "uint64", "I64": "int64", "F64": "float64", "C64": "complex64", "F32": "float32",
    "U32": "uint32", "I32": "int32", "BF16": "bfloat16", "F16": "float16", "U16": "uint16",
    "I16": "int16", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E8M0": "float8_e8m0fnu", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I8": "int8", "U8": "uint8", "F4": "float4_e2m1fn_x2", "BOOL": "bool",
}  # fmt: skip
_ORDER = {name: i for i, name in enumerate(_DTYPES)}
_COPY_CHUNK = 64 * 2**20


def _write_all(fd: int, data: bytes | memoryview) -> None:
    data = memoryview(data)
    while data:
        data = data[os.write(fd, data) :]


def _copy_range(source: Path, dst: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``source`` from ``offset`` to ``dst``, kernel-side where it can.

    ``copy_file_range`` moves the bytes through the page cache only (or reflinks them), so a
    tensor copied this way is never mapped into the process. Where it fails or copies
    nothing (some file systems, old kernels, across mounts), ``pread`` in bounded chunks
    takes over for the rest.
    """
    kernel = hasattr(os, "copy_file_range")
    with open(source, "rb") as src:
        while length:
            done = 0
            if kernel:
                try:
                    done = os.copy_file_range(src.fileno(), dst, min(length, _COPY_CHUNK), offset)
                except OSError:
                    pass
                kernel = bool(done)
            if not done:
                chunk = os.pread(src.fileno(), min(length, _COPY_CHUNK), offset)
                if not chunk:
                    raise HubkitError(f"{source}: ends before the tensor data its header lists")
                _write_all(dst, chunk)
                done = len(chunk)
            offset, length = offset + done, length - done


class ShardWriter:
    """Writes a checkpoint shaped like ``source`` tensor by tensor, never holding two at once.

    A merge changes values, never names, shapes or dtypes, so every output shard's layout
    (one per source shard, split further at ``max_bytes``) and header are known from the
    source's headers before any tensor is made. Each tensor is then appended the moment it
    is made and dropped; a tensor left unchanged is copied file to file without being read
    into memory. The files are byte-for-byte what ``safetensors`` ``save_file`` would write.
    """

    def __init__(self, source: Checkpoint, folder: Path, max_bytes: int | None = None) -> None:
        self.source = source
        self.folder = folder
        self.shards: list[list[str]] = []
        for file in source.files:
            names, size = [], 0
            for name in source.names_in(file):
                nbytes = source.tensors[name].nbytes
                if max_bytes and names and size + nbytes > max_bytes:
                    self.shards.append(names)
                    names, size = [], 0
                names.append(name)
                size += nbytes
            if names:
                self.shards.append(names)

    def _header(self, names: list[str]) -> bytes:
        entries: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        start = 0
        for name in names:
            info = self.source.tensors[name]
            entries[name] = {
                "dtype": info.dtype,
                "shape": list(info.shape),
                "data_offsets": [start, start + info.nbytes],
            }
            start += info.nbytes
        header = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
        header += b" " * (-len(header) % 8)
        return struct.pack("<Q", len(header)) + header

    def _append(self, out: int, name: str, tensor) -> None:
        import torch

        info = self.source.tensors[name]
        if tuple(tensor.shape) != info.shape or str(tensor.dtype) != f"torch.{_DTYPES.get(info.dtype)}":
            raise HubkitError(
                f"{name}: merged to {list(tensor.shape)} {tensor.dtype}, not {self.source.name}'s "
                f"{list(info.shape)} {info.dtype}"
            )
        _write_all(out, tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)

    def write(self, make: Callable[[str], Any], desc: str = "merging") -> None:
        """Write every shard, then the index; ``make(name)`` gives a tensor, or None to copy it as is."""
        from ..console import console

        count = len(self.shards)
        weight_map = {}
        for i, shard in enumerate(console().progress(self.shards, desc=desc, unit="shard")):
            names = sorted(shard, key=lambda n: (_ORDER.get(self.source.tensors[n].dtype, len(_ORDER)), n))
            final = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
            out = os.open(self.folder / final, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(out, self._header(names))
                for name in names:
                    tensor = make(name)
                    if tensor is None:
                        info = self.source.tensors[name]
                        _copy_range(self.source.folder / info.file, out, info.start, info.nbytes)
                    else:
                        self._append(out, name, tensor)
                    del tensor
            finally:
                os.close(out)
            weight_map.update(dict.fromkeys(shard, final))
        total = sum(info.nbytes for info in self.source.tensors.values())
        write_json(
            self.folder / INDEX,
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
        )


def copy_model_files(source: Path, dest: Path, tokenizer_source: Path | None = None) -> list[str]:
    """Copy config, generation config and tokenizer files beside the merged weights.

    The tokenizer comes from ``tokenizer_source`` when it has one (an adapter saves the
    tokenizer it was trained with), else from ``source``.
    """
    tok = (
        tokenizer_source
        if tokenizer_source and (tokenizer_source / "tokenizer_config.json").is_file()
        else source
    )
    copied = []
    for folder, names in ((source, MODEL_FILES), (tok, TOKENIZER_FILES)):
        for name in names:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, dest / name)
                copied.append(name)
    return copied


def resolve_model(ref: str, revision: str | None = None) -> tuple[Path, str | None]:
    """A local model folder as is, or a Hub id fetched (into the HF cache) from the current endpoint.

    Returns the folder and, for a Hub model, the commit it was fetched at. Only what a merge
    needs is fetched: safetensors weights, JSON/tokenizer files, the card.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve(), None
    from ..endpoint import use_endpoint

    endpoint = use_endpoint()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    patterns = ["*.safetensors", "*.json", "*.model", "*.txt", "*.jinja", "*.md"]
    try:
        snapshot = Path(snapshot_download(ref, revision=revision, allow_patterns=patterns))
        return snapshot, snapshot.name  # the cache names each snapshot folder by its commit
    except HFValidationError:
        raise HubkitError(f"{ref}: neither a local folder nor a Hub repo id") from None
    except (HfHubHTTPError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise HubkitError(
            f"{ref}: not a local folder, and not downloadable from {endpoint} ({reason})"
        ) from None
