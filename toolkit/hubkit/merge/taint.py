"""The taint gate: no merge input may descend from data or models known to be contaminated.

The Platypus paper warns that merging with a model fine-tuned on contaminated data carries
the contamination into the merge. So before a merge writes anything, every input's lineage
(training datasets and ancestor models) is read from its hubkit provenance or its model
card and checked against a registry of known-contaminated releases. A registry hit is
never overridable; unknown provenance is, but only by naming the model, and the override
is recorded in the merged model's provenance (and so its card).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..artifacts import artifact_kind, digest_of, read_json
from ..errors import GateRefused, HubkitError
from ..provenance import certificate_problem, dataset_certificate_problem
from ..recipe import TaintEntry
from ..schemas import ADAPTER, MERGED, PROVENANCE

CARD = "README.md"
CONFIG = "config.json"
# A symlink to recipes/taint_registry.yaml, so the default registry ships inside the package.
DEFAULT_REGISTRY = Path(__file__).resolve().parents[1] / "taint_registry.yaml"
CLEAN, ALLOWED = "clean", "allowed-unverified"


@dataclass(frozen=True)
class ModelInput:
    """One model a merge reads: ``id`` is how the user named it (Hub id or path)."""

    id: str
    role: str  # "base", "adapter" or "model"
    path: Path
    revision: str | None = None


@dataclass
class Lineage:
    """What an input was made from, as far as its provenance says."""

    source: str  # "hubkit provenance", "model card" or "none"
    datasets: list[str] = field(default_factory=list)
    ancestors: list[str] = field(default_factory=list)
    hubkit_trained: bool = False
    leak_certificate: dict[str, Any] | None = None
    unverified_ancestors: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None


def _norm(ref: str) -> str:
    return ref.strip().strip("/").casefold()


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def load_registry(
    files: Iterable[str | os.PathLike[str]] = (),
    entries: Iterable[TaintEntry] = (),
    *,
    include_default: bool = True,
) -> list[TaintEntry]:
    """The shipped registry, plus extra registry files and a recipe's ``merge.taint_registry``.

    A registry file is YAML: ``entries: [{id, reason, source}, ...]``.
    """
    paths = [DEFAULT_REGISTRY] if include_default else []
    paths += [Path(f) for f in files]
    out: list[TaintEntry] = []
    for path in paths:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise HubkitError(f"{path}: taint registry not found") from None
        except (OSError, yaml.YAMLError) as exc:
            raise HubkitError(
                f"{path}: not a readable YAML taint registry ({exc.__class__.__name__})"
            ) from None
        items = raw.get("entries") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise HubkitError(f"{path}: expected a mapping with an 'entries' list")
        for i, item in enumerate(items):
            try:
                out.append(TaintEntry.model_validate(item))
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"])
                raise HubkitError(f"{path}: entries[{i}].{key}: {err['msg']}") from None
    return out + list(entries)


def _card_metadata(folder: Path) -> dict[str, Any]:
    from huggingface_hub import metadata_load

    path = folder / CARD
    return (metadata_load(path) or {}) if path.is_file() else {}


def trained_base(provenance: dict[str, Any]) -> tuple[str | None, str | None]:
    """(base model id or path, its commit) that a ``hubkit train`` adapter was trained on."""
    base = provenance.get("base_model") or {}
    return base.get("name_or_path"), base.get("resolved_revision") or base.get("revision")


def _hubkit_kind(provenance: Any) -> str | None:
    """Which provenance hubkit wrote this is ("merged", "adapter" or "base-model"), or None.

    Only these vouch for a lineage: any other file named provenance.json (``{}``, another
    tool's) says nothing of the data, so it must not count as known, clean provenance.
    """
    if not isinstance(provenance, dict):
        return None
    kind, gate, base = provenance.get("kind"), provenance.get("taint_gate"), provenance.get("base_model")
    if kind == "merged" and isinstance(gate, dict) and isinstance(gate.get("inputs"), list):
        return "merged"  # merging.py's merged model
    if kind == "base-model" and isinstance(provenance.get("datasets"), list):
        return "base-model"  # train.py's tiny base: random weights that saw no data
    trained = isinstance(base, dict) and bool(base.get("name_or_path")) and "leak_certificate" in provenance
    if kind is None and trained:
        return "adapter"  # `hubkit train`'s adapter
    return None


def _hubkit_lineage(provenance: dict[str, Any], kind: str) -> Lineage:
    """Lineage from a hubkit provenance.json: a merged model carries its inputs' gate records."""
    if kind == "merged":
        records = provenance["taint_gate"]["inputs"]
        return Lineage(
            "hubkit provenance",
            datasets=_unique(d for r in records for d in r.get("datasets", [])),
            ancestors=_unique(a for r in records for a in [r.get("id", ""), *r.get("ancestors", [])]),
            unverified_ancestors=[r["id"] for r in records if r.get("verdict") == ALLOWED],
            provenance=provenance,
        )
    data = (provenance.get("recipe") or {}).get("data") or {}
    datasets = [*_as_list(provenance.get("datasets")), *_as_list(data.get("dataset"))]
    datasets += [s["hub_id"] for s in data.get("sources", []) if s.get("hub_id")]
    return Lineage(
        "hubkit provenance",
        datasets=_unique(datasets),
        ancestors=_unique(_as_list(trained_base(provenance)[0])),
        hubkit_trained=kind == "adapter",
        leak_certificate=provenance.get("leak_certificate"),
        provenance=provenance,
    )


def read_lineage(folder: str | os.PathLike[str]) -> Lineage:
    """An input's datasets and ancestors: its hubkit provenance.json and/or its card metadata.

    Without a provenance.json of a kind hubkit writes, the card must list training
    ``datasets`` for the lineage to count as known; a ``base_model`` alone is still checked
    against the registry.
    """
    folder = Path(folder)
    card = _card_metadata(folder)
    card_datasets, card_ancestors = _as_list(card.get("datasets")), _as_list(card.get("base_model"))
    provenance = read_json(folder / PROVENANCE) if (folder / PROVENANCE).is_file() else None
    kind = _hubkit_kind(provenance)
    if kind is not None:
        lineage = _hubkit_lineage(provenance, kind)
        lineage.datasets = _unique([*lineage.datasets, *card_datasets])
        lineage.ancestors = _unique([*lineage.ancestors, *card_ancestors])
        return lineage
    if artifact_kind(folder) in (ADAPTER, MERGED):
        return Lineage("none", ancestors=_unique(card_ancestors))  # a card cannot stand in for provenance
    if card_datasets:  # a card naming only a base model (peft's default card) says nothing of the data
        return Lineage("model card", datasets=_unique(card_datasets), ancestors=_unique(card_ancestors))
    return Lineage("none", ancestors=_unique(card_ancestors))


def _same_model(a: str, b: str) -> bool:
    if _norm(a) == _norm(b):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _hub_ids_of(folder: Path) -> list[str]:
    """The Hub ids a local model folder is a copy of, so that a copy is gated as its original.

    A Hugging Face cache snapshot (``models--org--name/snapshots/<commit>``) is that repo, and
    config.json's ``_name_or_path``, when a Hub id, names the model it was saved from (itself
    or its parent: a registry hit either way).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    folder = folder.expanduser().resolve()
    ids = []
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        ids.append(repo.removeprefix("models--").replace("--", "/"))
    config = read_json(folder / CONFIG) if (folder / CONFIG).is_file() else None
    name = config.get("_name_or_path") if isinstance(config, dict) else None
    if isinstance(name, str) and name.count("/") == 1:
        try:
            validate_repo_id(name)
            ids.append(name)
        except HFValidationError:
            pass
    return ids


def _tainted(model: ModelInput, lineage: Lineage, registry: dict[str, TaintEntry]) -> str | None:
    """Why this input is contaminated, or None: a registry hit, or a failed leak certificate.

    The model is checked as named and as the Hub ids its folder is a copy of: a local copy of
    a listed model must not pass as unknown provenance, which an override would let through.
    """

    def hit(what: str, ref: str) -> str | None:
        entry = registry.get(_norm(ref))
        if entry is None:
            return None
        why = " ".join(entry.reason.split()) + (f"; {entry.source}" if entry.source else "")
        return f"{what} {ref} is in the taint registry ({why})"

    found = [hit("the model", ref) for ref in _unique([model.id, *_hub_ids_of(model.path)])]
    found += [hit("its training dataset", d) for d in lineage.datasets]
    found += [hit("its ancestor model", a) for a in lineage.ancestors]
    if lineage.hubkit_trained and lineage.leak_certificate and not lineage.leak_certificate.get("passed"):
        found.append("its training data failed the leak check (leak certificate passed: false)")
    elif lineage.hubkit_trained and lineage.leak_certificate:
        problem = dataset_certificate_problem(lineage.leak_certificate, _data_sha256(lineage))
        found.append(f"its leak certificate {problem}" if problem else None)
    return next((f for f in found if f), None)


def _data_sha256(lineage: Lineage) -> str:
    """The data a hubkit-trained input's provenance says it was trained on (else its certificate's)."""
    recorded = ((lineage.provenance or {}).get("dataset") or {}).get("data_sha256")
    return recorded or str((lineage.leak_certificate or {}).get("dataset_sha256"))


def _unverified(lineage: Lineage) -> str | None:
    """Why this input's provenance cannot be trusted as clean, or None."""
    if lineage.source == "none":
        return (
            "unknown provenance (no hubkit provenance.json, and no model card metadata listing "
            "its training datasets)"
        )
    if lineage.hubkit_trained and not lineage.leak_certificate:
        return "hubkit-trained without a leak certificate (its data was not checked)"
    problem = certificate_problem(lineage.leak_certificate, _data_sha256(lineage))
    if lineage.hubkit_trained and problem:  # recomputed, not trusted: complete and for its data
        return f"its leak certificate {problem}"
    if lineage.unverified_ancestors:
        return f"merged from unverified input(s) {', '.join(lineage.unverified_ancestors)}"
    return None


def run_gate(
    inputs: Sequence[ModelInput], registry: Sequence[TaintEntry], allow_unverified: Sequence[str] = ()
) -> dict[str, Any]:
    """Check every input; refuse (HubkitError) before anything is written, else return the record.

    Contamination is reported before unknown provenance, so an override never hides it.
    """
    by_id = {_norm(e.id): e for e in registry}
    lineages = [read_lineage(m.path) for m in inputs]
    for model, lineage in zip(inputs, lineages, strict=True):
        reason = _tainted(model, lineage, by_id)
        if reason:
            raise GateRefused(f"{model.id}: refused by the taint gate: {reason}")
    records = []
    for model, lineage in zip(inputs, lineages, strict=True):
        reason = _unverified(lineage)
        override = bool(reason) and any(_same_model(model.id, a) for a in allow_unverified)
        if reason and not override:
            raise GateRefused(
                f"{model.id}: refused by the taint gate: {reason}; pass --allow-unverified {model.id} "
                "to merge it anyway (recorded in the provenance and the card)"
            )
        records.append(
            {
                "id": model.id,
                "provenance": lineage.source,
                "datasets": lineage.datasets,
                "ancestors": lineage.ancestors,
                "leak_certificate": lineage.leak_certificate,
                "verdict": ALLOWED if override else CLEAN,
                "reason": reason or f"lineage checked against {len(by_id)} registry entries",
                "override": override,
            }
        )
    return {
        "registry": {"entries": len(registry), "sha256": digest_of([e.model_dump() for e in registry])},
        "allow_unverified": list(allow_unverified),
        "inputs": records,
    }
