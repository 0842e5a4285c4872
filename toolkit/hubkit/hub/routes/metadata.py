"""README metadata: the ``cardData`` of a repo's info, and the validate-yaml check of a card."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .. import content_rules
from ..request import Request
from ..storage import BlobStore, Commit

_MAX_CARD_BODY = 2 * 1024 * 1024  # validate-yaml: a README of at most _MAX_CARD_BYTES, JSON-escaped
_MAX_CARD_BYTES = 1024 * 1024  # larger READMEs get no cardData and are not parsed


@functools.lru_cache(maxsize=256)
def _card_metadata(blob: Path) -> dict[str, Any] | None:
    """A README's valid metadata, parsed once per content (blobs are immutable, named by sha256).

    Callers must not modify the result: it is shared between requests.
    """
    meta, errors = content_rules.front_matter(blob.read_bytes().decode("utf-8", "replace"))
    return meta if meta and not errors else None


def card_data(blobs: BlobStore, commit: Commit) -> dict[str, Any] | None:
    """The ``cardData`` of a repo's info at ``commit``: its README's metadata, if small and valid."""
    entry = commit.tree.files.get("README.md")
    if entry is None or entry.size > _MAX_CARD_BYTES:
        return None
    try:
        return _card_metadata(blobs.path(entry.sha256))
    except OSError:  # a missing blob must not break repo_info
        return None


def validate_yaml(req: Request) -> None:
    """POST /api/validate-yaml: the errors in a card's metadata, as ``RepoCard.validate`` wants them."""
    body = req.body.json(_MAX_CARD_BODY)
    meta, errors = content_rules.front_matter(str(body.get("content") or ""))
    if meta:
        errors += content_rules.validate_metadata(meta, str(body.get("repoType") or "model"))
    warnings = [] if meta or errors else [{"message": "Empty or missing yaml metadata in repo card"}]
    if errors and "text/plain" in (req.headers.get("Accept") or ""):  # RepoCard.validate() asks so
        req.send_body(400, "\n".join(f"- Error: {m}" for m in errors).encode(), "text/plain; charset=utf-8")
    elif errors:
        req.send_json(
            {
                "error": "Invalid metadata in README.md",
                "errors": [{"message": m} for m in errors],
                "warnings": warnings,
            },
            400,
        )
    else:
        req.send_json({"errors": [], "warnings": warnings})
