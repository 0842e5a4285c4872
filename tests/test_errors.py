"""The HubkitError subclasses callers branch on are what the code raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubkit.artifacts import load_manifest, write_manifest
from hubkit.errors import GateRefused, HubkitError, InputNotFound, NotVerified
from hubkit.merge import require_verified, require_verified_if_merged
from hubkit.provenance import require_passing_certificate


def test_subclasses_are_hubkit_errors() -> None:
    """The CLI turns every HubkitError into one line and exit 1, the subclasses included."""
    assert all(issubclass(c, HubkitError) for c in (GateRefused, InputNotFound, NotVerified))


def test_missing_artifact_is_input_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="artifact folder not found"):
        load_manifest(tmp_path / "nowhere")
    with pytest.raises(InputNotFound, match=r"manifest\.json: not found"):
        load_manifest(tmp_path)


def test_unchecked_dataset_is_refused_by_the_gate(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_bytes(b"")
    with pytest.raises(GateRefused, match="no leak_certificate.json; run `hubkit data check` first"):
        require_passing_certificate(tmp_path)


def test_unverified_merge_is_not_verified(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    write_manifest(tmp_path, "merged", method="linear", verification=None)
    with pytest.raises(NotVerified, match="merged model not verified"):
        require_verified(tmp_path)
    with pytest.raises(NotVerified):
        require_verified_if_merged(tmp_path)
    write_manifest(tmp_path, "dataset")
    require_verified_if_merged(tmp_path)  # another kind of artifact has no check to pass
