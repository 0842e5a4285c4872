"""Provenance that flows forward: the leak certificate travels from the checked dataset
into the adapter's provenance, and from there into the merged model's and the cards.

A certificate is only worth something if it belongs to the data it sits beside, so it
records the sha256 of ``data.parquet`` and is checked against it on every read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .artifacts import sha256_file
from .errors import GateRefused, HubkitError, format_validation_error
from .portable import recall_location
from .schemas import DATA_FILE, LeakCertificate

CERTIFICATE = LeakCertificate.FILE
# Every field `hubkit data check` writes into a certificate that a gate reads.
CERTIFICATE_FIELDS = (
    "passed",
    "dataset_sha256",
    "benchmarks",
    "embedding_model",
    "threshold",
    "rule",
    "source",
    "rows_checked",
    "rows_removed",
    "hits",
)


def load_leak_certificate(dataset_dir: str | os.PathLike[str]) -> LeakCertificate | None:
    """The dataset artifact's leak certificate, or None when it has none.

    Raises when a certificate exists but does not match the data beside it.
    """
    folder = Path(dataset_dir)
    path = folder / CERTIFICATE
    if not path.is_file():
        return None
    certificate = LeakCertificate.read(folder)
    data = folder / DATA_FILE
    if not data.is_file():
        raise HubkitError(f"{folder}: {DATA_FILE} missing beside {CERTIFICATE}")
    if certificate.dataset_sha256 != sha256_file(data):
        raise HubkitError(f"{path}: certificate does not match {DATA_FILE} (data changed since)")
    return certificate


def require_passing_certificate(dataset_dir: str | os.PathLike[str]) -> LeakCertificate:
    """Return the certificate of a dataset that passed `hubkit data check`, or refuse it."""
    certificate = load_leak_certificate(dataset_dir)
    if certificate is None:
        raise GateRefused(
            f"{dataset_dir}: no {CERTIFICATE}; run `hubkit data check` first "
            "(or pass --allow-unchecked-data, which is recorded in the provenance and the card)"
        )
    path = Path(dataset_dir) / CERTIFICATE
    if not certificate.passed:
        raise GateRefused(f"{path}: leak check did not pass; refusing it")
    problem = certificate_problem(certificate, certificate.dataset_sha256)
    problem = problem or rows_problem(certificate, Path(dataset_dir) / DATA_FILE)
    if problem:
        raise GateRefused(f"{path}: {problem}; refusing it")
    return certificate


def certificate_content(certificate: LeakCertificate | dict[str, Any]) -> dict[str, Any]:
    """What a certificate says, as written (whichever schema version wrote it)."""
    if isinstance(certificate, dict):
        certificate = LeakCertificate.model_validate(certificate)
    return certificate.model_dump(mode="json", exclude_unset=True, exclude={"schema_version"})


def certificate_problem(certificate: LeakCertificate | dict[str, Any] | None, data_sha256: str) -> str | None:
    """Why ``certificate`` does not vouch for the data hashing to ``data_sha256``, or None: it must
    be complete (every field `hubkit data check` writes), for that data, and passing."""
    if certificate is None:
        return "no leak certificate"
    written = certificate if isinstance(certificate, dict) else certificate_content(certificate)
    missing = [name for name in CERTIFICATE_FIELDS if written.get(name) is None]
    if missing:
        return f"missing field {missing[0]!r}: not a certificate `hubkit data check` wrote"
    try:
        written = certificate_content(certificate)
    except ValidationError as exc:
        return format_validation_error(exc, "is not valid", noun="field")
    if not isinstance(written["benchmarks"], dict) or not written["benchmarks"]:
        return "names no benchmark it was checked against"
    if written["dataset_sha256"] != data_sha256:
        return f"is for data with sha256 {str(written['dataset_sha256'])[:12]}, not {data_sha256[:12]}"
    if written["passed"] is not True:
        return "leak check did not pass"
    return None


def rows_problem(certificate: LeakCertificate, data: Path) -> str | None:
    """Why the certificate's row counts do not add up to the rows of ``data`` (its parquet), or None."""
    import pyarrow.parquet as pq

    rows = pq.read_metadata(data).num_rows
    checked, removed = certificate.rows_checked, certificate.rows_removed
    if checked is None or removed is None or checked - removed != rows:
        claimed = None if checked is None or removed is None else checked - removed
        return f"{checked} rows checked - {removed} removed = {claimed}, but {DATA_FILE} holds {rows}"
    return None


def dataset_certificate_problem(
    certificate: LeakCertificate | dict[str, Any], data_sha256: str
) -> str | None:
    """Why ``certificate`` is not the one of the dataset artifact whose data hashes to ``data_sha256``
    (found where this machine last saw it, and hashed again), or None; None too when it is not here."""
    dataset = recall_location(data_sha256)
    if dataset is None:
        return None
    if sha256_file(dataset / DATA_FILE) != data_sha256:
        return f"names {dataset / DATA_FILE}, which changed since"
    if certificate_content(LeakCertificate.read(dataset)) != certificate_content(certificate):
        return f"differs from {dataset / CERTIFICATE}"
    return None
