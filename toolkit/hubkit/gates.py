"""The gate a push applies to each hubkit artifact kind: claims are recomputed, not trusted.

Whatever publishes a folder (``hubkit push`` alone, or train-and-push) runs ``push_gate`` on it
before anything is sent. Every artifact's files must still hash to what its ``manifest.json``
lists (nothing changed or added since it was written), and then, by kind:

- ``dataset``: ``data.parquet`` is hashed again and must be what the leak certificate names;
  the certificate must be one ``hubkit data check`` wrote (every field present), must have
  passed, and its row counts must add up to the rows in the parquet file;
- ``adapter``: its ``provenance.json`` (its lineage; a card is no substitute) must carry a
  passing certificate for the data it records, equal to the certificate of that dataset
  artifact, found on this machine by its data hash and hashed again;
- ``merged``: ``require_verified``: the equivalence check's verdict is recomputed from its
  figures, and its hash covers every file that is published.

A folder holding model weights or a dataset file without a hubkit manifest has no claim to
check: it is pushed only with ``--no-gate``, which the commit message and the card record.
Re-running the leak check and the equivalence check themselves is ``hubkit verify``'s work.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path

from .artifacts import CARD_FILES, read_json, sha256_file
from .errors import GateRefused
from .portable import recall_location
from .provenance import (
    CERTIFICATE,
    certificate_problem,
    dataset_certificate_problem,
    rows_problem,
)
from .schemas import (
    ADAPTER,
    DATA_FILE,
    DATASET,
    MANIFEST,
    MANIFESTS,
    MERGED,
    PROVENANCE,
    AdapterManifest,
    AdapterProvenance,
    LeakCertificate,
    Manifest,
)

WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.h5", "*.msgpack", "*.onnx")
DATASETS = ("*.parquet", "*.arrow", "*.feather", "*.jsonl", "*.csv", "*.tsv")


def push_gate(folder: Path, files: dict[str, Path]) -> str | None:
    """Check the hubkit artifact in ``folder`` (published as ``files``); return one line saying what
    was recomputed, or None for a folder that is no artifact and holds no weights or data.

    Raises a one-line GateRefused naming the file and the claim that does not hold.
    """
    if MANIFEST not in files:
        payload = sorted(rel for rel in files if _matches(rel, WEIGHTS + DATASETS))
        kind = _provenance_kind(folder)
        if kind is not None:
            raise GateRefused(f"{folder / PROVENANCE}: a hubkit {kind} without its {MANIFEST}; refusing it")
        if payload:
            raise GateRefused(
                f"{folder / payload[0]}: model weights or data without a hubkit {MANIFEST}, so no gate can "
                "check them; pass --no-gate to publish them unchecked (the commit and the card say so)"
            )
        return None
    kind = Manifest.read(folder).kind
    gate = GATES.get(kind)
    if gate is None:
        raise GateRefused(
            f"{folder / MANIFEST}: kind {kind!r} is not a hubkit artifact ({', '.join(GATES)}); refusing it"
        )
    manifest = MANIFESTS[kind].read(folder)
    check_unchanged(folder, files, manifest)
    return f"{kind} gate: {gate(folder, manifest)}"


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel.rsplit("/", 1)[-1].lower(), p) for p in patterns)


def _provenance_kind(folder: Path) -> str | None:
    """The hubkit kind a ``provenance.json`` claims (read leniently: it may be any tool's file)."""
    path = folder / PROVENANCE
    if not path.is_file():
        return None
    provenance = read_json(path)
    return (
        provenance.get("kind") if isinstance(provenance, dict) and provenance.get("kind") in GATES else None
    )


def check_unchanged(folder: Path, files: dict[str, Path], manifest: Manifest) -> None:
    """Every published file (but the manifest and the cards) hashes to what the manifest lists."""
    listed = manifest.files
    published = {rel: path for rel, path in files.items() if rel not in (MANIFEST, *CARD_FILES)}
    for rel in sorted(published):
        if rel not in listed:
            raise GateRefused(
                f"{folder / rel}: not part of the artifact ({MANIFEST} does not list it); refusing it"
            )
        if sha256_file(published[rel]) != listed[rel]:
            raise GateRefused(f"{folder / rel}: changed since {MANIFEST} was written (sha256 differs)")
    missing = sorted(set(listed) - set(published))
    if missing:
        raise GateRefused(f"{folder / missing[0]}: listed in {MANIFEST} but missing")


def _dataset(folder: Path, manifest: Manifest) -> str:
    data = folder / DATA_FILE
    if not data.is_file():
        raise GateRefused(f"{data}: missing; a dataset artifact publishes its data as {DATA_FILE}")
    path = folder / CERTIFICATE
    if not path.is_file():
        raise GateRefused(f"{path}: missing; run `hubkit data check` (or push with --no-gate)")
    certificate = LeakCertificate.read(folder)
    problem = certificate_problem(certificate, sha256_file(data)) or rows_problem(certificate, data)
    if problem:
        raise GateRefused(f"{path}: {problem}; refusing it")
    rows = certificate["rows_checked"] - certificate["rows_removed"]  # they add up to the parquet's
    return f"{DATA_FILE} hashed again ({rows} rows) and matches its passing leak certificate"


def _adapter(folder: Path, manifest: Manifest) -> str:
    path = folder / PROVENANCE
    if not path.is_file():
        raise GateRefused(f"{path}: missing; an adapter's lineage is its provenance, refusing it")
    provenance = AdapterProvenance.read(folder, needed_by="the adapter's push gate")
    certificate = provenance.leak_certificate
    if provenance.allow_unchecked_data and certificate is None:
        return "trained on unchecked data (--allow-unchecked-data), as its provenance and card say"
    data_sha256 = provenance.dataset.data_sha256
    if problem := certificate_problem(certificate, data_sha256):
        raise GateRefused(f"{path}: leak_certificate {problem}; refusing it")
    if not isinstance(manifest, AdapterManifest) or manifest.dataset_sha256 != data_sha256:
        raise GateRefused(
            f"{path}: dataset.data_sha256 differs from {MANIFEST}'s dataset_sha256; refusing it"
        )
    if recall_location(data_sha256) is None:
        raise GateRefused(
            f"{path}: the dataset it was trained on (data sha256 {data_sha256[:12]}) is not on this machine, "
            "so its certificate cannot be checked here; `hubkit verify adapter` checks a published one"
        )
    if problem := dataset_certificate_problem(certificate, data_sha256):  # type: ignore[arg-type]
        raise GateRefused(f"{path}: leak_certificate {problem}; refusing it")
    return f"its leak certificate is the one of the dataset it names ({DATA_FILE} hashed again)"


def _merged(folder: Path, manifest: Manifest) -> str:
    from .merge import require_verified

    summary = require_verified(folder)
    return f"equivalence check passed and covers every published file ({summary['weights_sha256'][:12]})"


GATES: dict[str, Callable[[Path, Manifest], str]] = {
    DATASET: _dataset,
    ADAPTER: _adapter,
    MERGED: _merged,
}
