"""Artifacts: a folder plus a ``manifest.json``, written atomically, hashed for resumability.

Every stage hands the next one a folder. The manifest records what the folder is, the
sha256 of each of its files and the hashes of the inputs it was made from, so a stage can
tell whether its output is already up to date and any stage can run alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .errors import HubkitError, InputNotFound
from .schemas import MANIFEST, MANIFESTS, Manifest

# Written into an artifact after it is complete, from its manifest: not part of what it is.
CARD_FILES = ("README.md", "training_loss.png")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so size never matters.

    A file this process hashed before is not read again while its inode, size, mtime and ctime
    are unchanged (a write changes ctime, and nothing can set it back): a push of merged weights
    otherwise reads them once for the gate, once for the diff and once for the round trip. As
    in git, a file changed less than ``_SETTLED_NS`` before it was hashed is not remembered: the
    kernel's clock ticks coarsely, so a second write that soon could leave the stamps as they were.
    """
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _HASHED:
        return _HASHED[key]
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    if settled:
        _HASHED[key] = digest.hexdigest()
    return digest.hexdigest()


_HASHED: dict[tuple[int, ...], str] = {}
_SETTLED_NS = 2_000_000_000


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_files(folder: str | os.PathLike[str]) -> list[str]:
    """Relative POSIX paths of every regular file under ``folder``, sorted."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def hash_files(
    folder: str | os.PathLike[str], exclude: tuple[str, ...] = (MANIFEST, *CARD_FILES)
) -> dict[str, str]:
    """Map each file (relative path) under ``folder`` to its sha256, skipping ``exclude``.

    The manifest and the card files are left out, so writing a card never makes an
    artifact look stale.
    """
    root = Path(folder)
    return {rel: sha256_file(root / rel) for rel in list_files(root) if rel not in exclude}


def digest_of(obj: Any) -> str:
    """A stable sha256 of any JSON-serialisable value (sorted keys, no whitespace)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, or raise a HubkitError that names it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputNotFound(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise HubkitError(f"{path}: not readable JSON ({exc})") from None


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success it replaces ``dest`` whole.

    On any exception the temporary folder is removed and ``dest`` is left as it was, so a
    crash never leaves a half artifact that looks complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(
    folder: str | os.PathLike[str],
    kind: str,
    inputs: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Write ``manifest.json`` for an artifact folder whose files are all in place.

    ``inputs`` holds the hashes of what the artifact was made from; ``fields`` anything
    the later stages and the cards need (counts, thresholds, versions...), checked against
    the kind's manifest schema.
    """
    files = hash_files(folder)
    manifest = MANIFESTS.get(kind, Manifest)(
        kind=kind,
        hubkit_version=__version__,
        inputs=dict(inputs or {}),
        files=files,
        content_hash=digest_of(files),
        **fields,
    ).to_json_dict()
    write_json(Path(folder) / MANIFEST, manifest)
    return manifest


def load_manifest(folder: str | os.PathLike[str], kind: str | None = None) -> Manifest:
    """An artifact's manifest, as its kind's schema, checking the kind; errors name the folder."""
    if not Path(folder).is_dir():
        raise InputNotFound(f"{folder}: artifact folder not found")
    manifest = Manifest.read(folder)
    if kind is not None and manifest.kind != kind:
        raise HubkitError(f"{folder}: expected a {kind!r} artifact, found {manifest.kind!r}")
    return MANIFESTS[manifest.kind].read(folder) if manifest.kind in MANIFESTS else manifest


def read_manifest(folder: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """``load_manifest`` as the JSON it was read from."""
    return load_manifest(folder, kind).to_json_dict()


def artifact_kind(folder: str | os.PathLike[str]) -> str | None:
    """The kind of hubkit artifact ``folder`` is, or None for any other folder (a model made
    elsewhere, a manifest.json of another tool's)."""
    path = Path(folder) / MANIFEST
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def is_up_to_date(folder: str | os.PathLike[str], inputs: Mapping[str, Any]) -> bool:
    """True when ``folder`` is a complete artifact made from exactly ``inputs``, files unchanged."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return manifest.get("inputs") == dict(inputs) and manifest.get("files") == hash_files(folder)
