"""A leak certificate with every field `hubkit data check` writes, for tests that build artifacts
by hand: the gates refuse an incomplete one (``hubkit.provenance.CERTIFICATE_FIELDS``)."""

from __future__ import annotations

from typing import Any

from hubkit.decontam.rule import RULES, rule_record


def complete_certificate(dataset_sha256: str, rows: int, **changes: Any) -> dict[str, Any]:
    """A passing certificate for data hashing to ``dataset_sha256`` that kept ``rows`` rows
    (two removed); ``changes`` override any field."""
    return {
        "passed": True,
        "dataset_sha256": dataset_sha256,
        "benchmarks": {"gsm8k": {"source": "hubkit:sample_data/benchmarks/gsm8k_test.jsonl", "sha256": "ab"}},
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "threshold": RULES["gsm8k"].candidate,
        "rule": rule_record(["gsm8k"], "multiview", RULES["gsm8k"].candidate),
        "source": {"kind": "artifact", "name": "dataset"},
        "rows_checked": rows + 2,
        "rows_removed": 2,
        "hits": 2,
        **changes,
    }
