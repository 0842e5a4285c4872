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
from typing import Any

from .artifacts import CARD_FILES, MANIFEST, digest_of, read_json, sha256_file
from .errors import HubkitError
from .portable import recall_location
from .provenance import CERTIFICATE, DATA_FILE

PROVENANCE = "provenance.json"
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.h5", "*.msgpack", "*.onnx")
DATASETS = ("*.parquet", "*.arrow", "*.feather", "*.jsonl", "*.csv", "*.tsv")
# Every field `hubkit data check` writes into a certificate that a gate reads.
CERTIFICATE_FIELDS = (
    "passed",
    "dataset_sha256",
    "benchmarks",
    "embedding_model",
    "threshold",
    "rows_checked",
    "rows_removed",
    "hits",
)


def push_gate(folder: Path, files: dict[str, Path]) -> str | None:
    """Check the hubkit artifact in ``folder`` (published as ``files``); return one line saying what
    was recomputed, or None for a folder that is no artifact and holds no weights or data.

    Raises a one-line HubkitError naming the file and the claim that does not hold.
    """
    if MANIFEST not in files:
        payload = sorted(rel for rel in files if _matches(rel, WEIGHTS + DATASETS))
        kind = _provenance_kind(folder)
        if kind is not None:
            raise HubkitError(f"{folder / PROVENANCE}: a hubkit {kind} without its {MANIFEST}; refusing it")
        if payload:
            raise HubkitError(
                f"{folder / payload[0]}: model weights or data without a hubkit {MANIFEST}, so no gate can "
                "check them; pass --no-gate to publish them unchecked (the commit and the card say so)"
            )
        return None
    manifest = read_json(folder / MANIFEST)
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    gate = GATES.get(kind)  # type: ignore[arg-type]
    if gate is None:
        raise HubkitError(
            f"{folder / MANIFEST}: kind {kind!r} is not a hubkit artifact ({', '.join(GATES)}); refusing it"
        )
    check_unchanged(folder, files, manifest)
    return f"{kind} gate: {gate(folder, manifest)}"


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel.rsplit("/", 1)[-1].lower(), p) for p in patterns)


def _provenance_kind(folder: Path) -> str | None:
    path = folder / PROVENANCE
    if not path.is_file():
        return None
    provenance = read_json(path)
    return (
        provenance.get("kind") if isinstance(provenance, dict) and provenance.get("kind") in GATES else None
    )


def check_unchanged(folder: Path, files: dict[str, Path], manifest: dict[str, Any]) -> None:
    """Every published file (but the manifest and the cards) hashes to what the manifest lists."""
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise HubkitError(f"{folder / MANIFEST}: no 'files' map; not a manifest hubkit wrote")
    published = {rel: path for rel, path in files.items() if rel not in (MANIFEST, *CARD_FILES)}
    for rel in sorted(published):
        if rel not in listed:
            raise HubkitError(
                f"{folder / rel}: not part of the artifact ({MANIFEST} does not list it); refusing it"
            )
        if sha256_file(published[rel]) != listed[rel]:
            raise HubkitError(f"{folder / rel}: changed since {MANIFEST} was written (sha256 differs)")
    missing = sorted(set(listed) - set(published))
    if missing:
        raise HubkitError(f"{folder / missing[0]}: listed in {MANIFEST} but missing")


def certificate_problem(certificate: Any, data_sha256: str) -> str | None:
    """Why ``certificate`` does not vouch for the data hashing to ``data_sha256``, or None."""
    if not isinstance(certificate, dict):
        return "no leak certificate"
    missing = [name for name in CERTIFICATE_FIELDS if name not in certificate]
    if missing:
        return f"missing field {missing[0]!r}: not a certificate `hubkit data check` wrote"
    benchmarks = certificate["benchmarks"]
    if not isinstance(benchmarks, dict) or not benchmarks:
        return "names no benchmark it was checked against"
    if certificate["dataset_sha256"] != data_sha256:
        return f"is for data with sha256 {str(certificate['dataset_sha256'])[:12]}, not {data_sha256[:12]}"
    if certificate["passed"] is not True:
        return "leak check did not pass"
    return None


def _dataset(folder: Path, manifest: dict[str, Any]) -> str:
    data = folder / DATA_FILE
    if not data.is_file():
        raise HubkitError(f"{data}: missing; a dataset artifact publishes its data as {DATA_FILE}")
    path = folder / CERTIFICATE
    if not path.is_file():
        raise HubkitError(f"{path}: missing; run `hubkit data check` (or push with --no-gate)")
    certificate = read_json(path)
    if problem := certificate_problem(certificate, sha256_file(data)):
        raise HubkitError(f"{path}: {problem}; refusing it")
    import pyarrow.parquet as pq

    rows = pq.read_metadata(data).num_rows
    claimed = certificate["rows_checked"] - certificate["rows_removed"]
    if claimed != rows:
        raise HubkitError(
            f"{path}: {certificate['rows_checked']} rows checked - {certificate['rows_removed']} removed "
            f"= {claimed}, but {DATA_FILE} holds {rows}; refusing it"
        )
    return f"{DATA_FILE} hashed again ({rows} rows) and matches its passing leak certificate"


def _adapter(folder: Path, manifest: dict[str, Any]) -> str:
    path = folder / PROVENANCE
    if not path.is_file():
        raise HubkitError(f"{path}: missing; an adapter's lineage is its provenance, refusing it")
    provenance = read_json(path)
    if provenance.get("allow_unchecked_data") and provenance.get("leak_certificate") is None:
        return "trained on unchecked data (--allow-unchecked-data), as its provenance and card say"
    data_sha256 = (provenance.get("dataset") or {}).get("data_sha256") or ""
    certificate = provenance.get("leak_certificate")
    if problem := certificate_problem(certificate, data_sha256):
        raise HubkitError(f"{path}: leak_certificate {problem}; refusing it")
    if manifest.get("dataset_sha256") != data_sha256:
        raise HubkitError(
            f"{path}: dataset.data_sha256 differs from {MANIFEST}'s dataset_sha256; refusing it"
        )
    if recall_location(data_sha256) is None:
        raise HubkitError(
            f"{path}: the dataset it was trained on (data sha256 {data_sha256[:12]}) is not on this machine, "
            "so its certificate cannot be checked here; `hubkit verify adapter` checks a published one"
        )
    if problem := dataset_certificate_problem(certificate, data_sha256):
        raise HubkitError(f"{path}: leak_certificate {problem}; refusing it")
    return f"its leak certificate is the one of the dataset it names ({DATA_FILE} hashed again)"


def dataset_certificate_problem(certificate: dict[str, Any], data_sha256: str) -> str | None:
    """Why ``certificate`` is not the one of the dataset artifact whose data hashes to ``data_sha256``
    (found where this machine last saw it, and hashed again), or None; None too when it is not here."""
    dataset = recall_location(data_sha256)
    if dataset is None:
        return None
    if sha256_file(dataset / DATA_FILE) != data_sha256:
        return f"names {dataset / DATA_FILE}, which changed since"
    if digest_of(read_json(dataset / CERTIFICATE)) != digest_of(certificate):
        return f"differs from {dataset / CERTIFICATE}"
    return None


def _merged(folder: Path, manifest: dict[str, Any]) -> str:
    from .merge import require_verified

    summary = require_verified(folder)
    return f"equivalence check passed and covers every published file ({summary['weights_sha256'][:12]})"


GATES: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "dataset": _dataset,
    "adapter": _adapter,
    "merged": _merged,
}
