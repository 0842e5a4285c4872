"""Provenance that flows forward: the leak certificate travels from the checked dataset
into the adapter's provenance, and from there into the merged model's and the cards.

A certificate is only worth something if it belongs to the data it sits beside, so it
records the sha256 of ``data.parquet`` and is checked against it on every read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .artifacts import sha256_file
from .errors import GateRefused, HubkitError
from .schemas import DATA_FILE, LeakCertificate

CERTIFICATE = LeakCertificate.FILE


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
    if not certificate.passed:
        raise GateRefused(f"{Path(dataset_dir) / CERTIFICATE}: leak check did not pass; refusing it")
    return certificate
