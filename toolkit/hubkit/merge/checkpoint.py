"""Safetensors checkpoints read lazily and written shard by shard.

A merge must never hold a whole model: headers are read up front (names, shapes, dtypes, so
every mismatch is found before anything is written), tensors are read one at a time, each
through its own memory map, so only the shard being written stays resident.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import hash_files, read_json, write_json
from ..errors import HubkitError

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
            raise HubkitError(f"{self.name}: model folder {self.folder} not found")
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
            with _open(self.folder / file) as handle:
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    tensors[key] = TensorInfo(file, tuple(piece.get_shape()), piece.get_dtype())
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


def model_file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of a model folder's weights, index and config: what a merge or a check is about."""
    hashes = hash_files(folder)
    return {
        rel: digest
        for rel, digest in hashes.items()
        if rel.endswith(".safetensors") or rel in (INDEX, *MODEL_FILES)
    }


def _return_freed_memory() -> None:
    """Hand the freed heap of a written shard back to the OS (glibc only; a no-op elsewhere).

    glibc keeps freed blocks under 32 MB in its heap, so after a shard of such tensors the
    process would stay a shard larger than it needs while the next shard is built.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return


class ShardWriter:
    """Writes ``model-0000N-of-0000M.safetensors`` one shard at a time, then the index.

    ``flush`` ends a shard (the merge calls it at each input shard boundary, keeping the
    source's layout); ``max_bytes`` also ends one when it would grow past that size. Shards
    are named when the count is known, in ``close``.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._buffer: dict[str, Any] = {}
        self._buffered = 0
        self._shards: list[list[str]] = []
        self.total_size = 0

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.max_bytes and self._buffer and self._buffered + size > self.max_bytes:
            self.flush()
        self._buffer[name] = tensor.contiguous()
        self._buffered += size
        self.total_size += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self._buffer:
            return
        save_file(self._buffer, self.folder / f".shard-{len(self._shards)}", metadata={"format": "pt"})
        self._shards.append(list(self._buffer))
        self._buffer = {}
        self._buffered = 0
        _return_freed_memory()

    def close(self) -> None:
        self.flush()
        count = len(self._shards)
        weight_map = {}
        for i, names in enumerate(self._shards):
            final = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
            os.replace(self.folder / f".shard-{i}", self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total_size}, "weight_map": dict(sorted(weight_map.items()))}
        write_json(self.folder / INDEX, index)


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
