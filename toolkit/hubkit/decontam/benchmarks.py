"""Benchmark test sets as (question, gold answers) items, loaded as the table says.

Each leak-checked benchmark of ``hubkit.benchmarks.BENCHMARKS`` is loaded from the Hub split
the Open LLM Leaderboard (v1) scored (its ``loader``), through ``datasets``, or from a local
file, and each row read by the loader's row function (see that module for the formats). A
local source is a path; ``hub:ID[@REVISION]`` picks another Hub repo (a mirror, a pinned
commit) with the same schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import digest_of
from ..benchmarks import BENCHMARKS, Item, Loader
from ..errors import HubkitError, dataset_errors, hub_errors
from ..portable import portable_ref
from ..rows import read_records


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its items and what pins them (source, revision, content hash)."""

    name: str
    items: list[Item]
    source: str
    revision: str | None
    sha256: str
    numeric: bool  # answers are numbers (GSM8K): compared by value

    def record(self) -> dict[str, Any]:
        """What the leak certificate says about this benchmark."""
        return {
            "source": portable_ref(self.source),  # a local file by name: its sha256 is beside
            "revision": self.revision,
            "sha256": self.sha256,
            "items": len(self.items),
        }


def _read_hellaswag_txt(path: Path) -> list[dict[str, Any]]:
    """The 6-lines-per-item text export: context, gold label, 4 endings."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) % 6:
        raise ValueError(f"{len(lines)} lines, not a multiple of 6")
    return [
        {"query": lines[i], "label": lines[i + 1], "endings": lines[i + 2 : i + 6]}
        for i in range(0, len(lines), 6)
    ]


# The leak-checked benchmarks' loaders, by name.
LOADERS: dict[str, Loader] = {key: b.loader for key, b in BENCHMARKS.items() if b.loader is not None}


def _check_name(name: str) -> Loader:
    loader = LOADERS.get(name)
    if loader is None:
        raise HubkitError(f"unknown benchmark {name!r}; known: {', '.join(LOADERS)}")
    return loader


def _from_hub(name: str, loader: Loader, ref: str | None) -> tuple[list[dict[str, Any]], str, str | None]:
    from datasets import load_dataset

    hub_id, _, revision = (ref or loader.hub_id).partition("@")
    where = f"{hub_id}" + (f"/{loader.config}" if loader.config else "") + f" split {loader.split}"
    try:
        dataset = load_dataset(hub_id, loader.config, split=loader.split, revision=revision or None)
    except dataset_errors() as exc:  # offline, not found, gated: say which benchmark and how to go local
        raise HubkitError(
            f"benchmark {name!r}: cannot load {where}{f' at {revision}' if revision else ''} "
            f"({type(exc).__name__}); "
            f"give a local copy with --benchmark-file {name}=PATH"
        ) from None
    return dataset.to_list(), where, revision or _hub_commit(hub_id)


def _hub_commit(hub_id: str) -> str | None:
    """The commit the Hub serves now for ``hub_id`` (None when the Hub cannot be asked)."""
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(hub_id).sha
    except hub_errors():  # offline: the certificate records no revision rather than a guess
        return None


def _from_file(name: str, path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise HubkitError(f"benchmark {name!r}: {path}: file not found")
    if path.suffix == ".txt":
        try:
            return _read_hellaswag_txt(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HubkitError(f"benchmark {name!r}: {path}: unreadable ({exc})") from None
    try:
        return read_records(path)
    except HubkitError as exc:
        raise HubkitError(f"benchmark {name!r}: {exc}") from None


def load_benchmark(name: str, source: str | os.PathLike[str] | None = None) -> Benchmark:
    """Load benchmark ``name`` from the Hub (``source`` None or ``hub:ID[@REV]``) or a local path."""
    loader = _check_name(name)
    ref = str(source) if source is not None else None
    if ref is None or ref.startswith("hub:"):
        rows, where, revision = _from_hub(name, loader, ref.removeprefix("hub:") if ref else None)
    else:
        rows, where, revision = _from_file(name, Path(ref)), str(ref), None
    try:
        items = [loader.row(row) for row in rows]
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise HubkitError(
            f"benchmark {name!r}: {where}: rows do not look like {name} ({type(exc).__name__}: {exc})"
        ) from None
    if not items:
        raise HubkitError(f"benchmark {name!r}: {where}: no items")
    hashed = [[item.question, list(item.answers)] for item in items]
    return Benchmark(name, items, where, revision, digest_of(hashed), loader.numeric)


def load_benchmarks(names: list[str], files: dict[str, str] | None = None) -> list[Benchmark]:
    """Load several benchmarks; ``files`` maps a name to a local path (or ``hub:ID[@REV]``)."""
    files = dict(files or {})
    for name in [*names, *files]:
        _check_name(name)
    unused = sorted(set(files) - set(names))
    if unused:
        raise HubkitError(
            f"benchmark file given for {', '.join(unused)}, which is not among the benchmarks checked"
        )
    return [load_benchmark(name, files.get(name)) for name in names]
