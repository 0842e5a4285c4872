"""How a published record names a local input: never by an absolute path of the machine that made it.

A Hub id (with the revision recorded beside it) is kept as it is. A file bundled with hubkit is
named ``hubkit:sample_data/...``, which resolves on any install. Any other local file or folder
is named by its base name; the record carries its sha256 beside, which is what identifies it.
A path that must stay usable (a merged model's inputs, for ``hubkit verify merge``) is written
relative to the artifact that records it.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

BUNDLED = "hubkit:"


def is_local(ref: str) -> bool:
    """True when ``ref`` names something on this machine rather than a Hub repo."""
    return not ref.startswith(BUNDLED) and (
        os.path.isabs(ref) or ref.startswith((".", "~")) or Path(ref).exists()
    )


def portable_ref(ref: str | os.PathLike[str] | None) -> str | None:
    """``ref`` as a published record may name it: a Hub id or ``hubkit:`` ref as is, a bundled file
    as ``hubkit:sample_data/...``, any other local path by its base name."""
    if ref is None:
        return None
    text = str(ref)
    if not is_local(text):
        return text
    path = Path(text).expanduser().resolve()
    package = Path(str(files("hubkit"))).resolve()
    if path.is_relative_to(package):
        return BUNDLED + path.relative_to(package).as_posix()
    return path.name


def bundled_path(ref: str) -> Path:
    """The file a ``hubkit:sample_data/...`` ref names in this install."""
    return Path(str(files("hubkit").joinpath(ref.removeprefix(BUNDLED))))


def relative_to_artifact(path: str | os.PathLike[str], artifact: str | os.PathLike[str]) -> str:
    """``path`` relative to the artifact folder that records it, so the record holds no absolute path."""
    return Path(os.path.relpath(Path(path).resolve(), Path(artifact).resolve())).as_posix()


def cache_root() -> Path:
    """``$HUBKIT_CACHE`` or ``~/.cache/hubkit``: what this machine keeps for itself, never published."""
    return Path(os.environ.get("HUBKIT_CACHE") or Path.home() / ".cache" / "hubkit")


def remember_location(digest: str, folder: str | os.PathLike[str]) -> None:
    """Note on this machine only (``$HUBKIT_CACHE/locations``) where the input with ``digest`` lies,
    so a record that names it by name + hash can still be followed here after its artifact moves."""
    from .artifacts import write_json

    write_json(cache_root() / "locations" / f"{digest}.json", {"path": str(Path(folder).resolve())})


def recall_location(digest: str) -> Path | None:
    """Where ``remember_location`` last saw the input with ``digest``, if it is still a folder there."""
    import json

    try:
        path = Path(json.loads((cache_root() / "locations" / f"{digest}.json").read_text())["path"])
    except (OSError, ValueError, KeyError):
        return None
    return path if path.is_dir() else None
