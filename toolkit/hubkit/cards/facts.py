"""What every card kind shares: the checks on a field a card needs, Hub ids and tags, and the leak
certificate and ``model-index`` as the cards show them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schemas
from ..errors import HubkitError
from ..scores import EvalScore

if TYPE_CHECKING:
    from huggingface_hub import CardData

# hubkit's prompt templates and the benchmarks it checks are English, as Platypus was.
LANGUAGE = "en"


def _needed(value: Any, path: Path, field: str, card: str) -> Any:
    """A field the card cannot do without, though its file may leave it out (None)."""
    if value is None:
        raise HubkitError(f"{path}: missing field '{field}' needed by the {card} card")
    return value


def _hub_ids(refs: Sequence[str | None]) -> list[str]:
    """The Hub repo ids among ``refs``, unique: local paths and ``hubkit:`` names are not Hub metadata."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    out = []
    for ref in refs:
        if not ref:
            continue
        try:
            validate_repo_id(ref)
        except HFValidationError:
            continue
        out.append(ref)
    return list(dict.fromkeys(out))


def _tags(*groups: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tag for group in groups for tag in group))


def _repo_name(repo_id: str) -> str:
    return repo_id.rsplit("/", 1)[-1]


def _one_or_many(items: list[str]) -> str | list[str] | None:
    """A metadata value as the Hub writes it: a string for one item, a list for several."""
    return items[0] if len(items) == 1 else items or None


# --------------------------------------------------------------------------- shared facts


@dataclass(frozen=True)
class LeakCertificate:
    """What ``hubkit data check`` certified; shown on every card downstream of the data."""

    passed: bool
    dataset_sha256: str
    benchmarks: list[str]
    embedding_model: str
    threshold: float

    @classmethod
    def of(cls, record: schemas.LeakCertificate, path: Path, card: str, prefix: str = "") -> LeakCertificate:
        """The certificate ``record`` read from ``path`` (at ``prefix`` in it), with what the card shows."""
        return cls(
            passed=record.passed,
            dataset_sha256=record.dataset_sha256,
            benchmarks=[str(b) for b in _needed(record.benchmarks, path, f"{prefix}benchmarks", card)],
            embedding_model=_needed(record.embedding_model, path, f"{prefix}embedding_model", card),
            threshold=_needed(record.threshold, path, f"{prefix}threshold", card),
        )

    def rows(self) -> list[tuple[str, str]]:
        """The certificate as (label, value) rows, the same table on every card."""
        return [
            ("Passed", "yes" if self.passed else "**no**"),
            ("Data sha256", f"`{self.dataset_sha256}`"),
            ("Benchmarks", ", ".join(self.benchmarks)),
            ("Embedding model", f"`{self.embedding_model}`"),
            ("Similarity threshold", f"{self.threshold:g}"),
        ]


def _model_index_data(name: str, scores: Sequence[EvalScore]) -> dict[str, Any]:
    """ModelCardData arguments for ``model-index`` (none without scores)."""
    if not scores:
        return {}
    return {"model_name": name, "eval_results": [s.to_eval_result() for s in scores]}


def model_card_data(
    name: str,
    license: str,
    library: str,
    tags: list[str],
    base: list[str],
    relation: str,
    datasets: list[str],
    scores: Sequence[EvalScore],
) -> CardData:
    """A model card's front matter: ``base`` (Hub ids) as ``base_model`` with its ``relation``,
    the scores as ``model-index``."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        license=license,
        language=[LANGUAGE],
        library_name=library,
        pipeline_tag="text-generation",
        tags=tags,
        base_model=_one_or_many(base),
        base_model_relation=relation if base else None,
        datasets=datasets or None,
        **_model_index_data(name, scores),
    )
