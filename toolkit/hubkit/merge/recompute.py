"""The model-merge half of the equivalence check: sampled tensors recomputed by formula.

A model merge has no reference model to compare logits with, but it has a formula: with the
inputs and the parameters recorded in ``provenance.json`` (the weights of a hubkit merge, the
published mergekit configuration of a mergekit one, the seed of a random one), each output
tensor can be computed again with ``hubkit.formulas``, which shares no code with the engine
that made it. Up to ``SAMPLE`` tensors are recomputed (all of a small model), spread evenly
over the sorted names; any difference beyond the dtype's rounding fails the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..formulas import Settings
from ..methods import MERGE_METHODS
from ..schemas import MergedProvenance, MergeInputRecord
from .checkpoint import Checkpoint

SAMPLE = 32
# |recomputed - merged| allowed: atol + rtol * max |recomputed|, by the merged weights' dtype
TOLERANCES = {"F32": (1e-6, 1e-5), "F16": (1e-3, 2e-3), "BF16": (1e-2, 1e-2)}


class NotRecomputable(Exception):
    """The merge's parameters cannot be resolved per tensor here (the reason is the message)."""


def sample(names: list[str], count: int = SAMPLE) -> list[str]:
    """Up to ``count`` names spread evenly over the sorted list (all of them when fewer)."""
    names = sorted(names)
    if len(names) <= count:
        return names
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def _scalar(value: Any, what: str) -> Any:
    if isinstance(value, (bool, int, float)):
        return value
    raise NotRecomputable(f"{what} varies per tensor (a gradient or filter): not recomputed")


def _mergekit_plan(provenance: MergedProvenance, locate: Callable[[MergeInputRecord], Path]):
    """(base folder or None, [(folder, per-model parameters)], shared parameters) from the config."""
    from mergekit.merge_methods.base import MISSING
    from mergekit.merge_methods.registry import get

    config = provenance.mergekit_config or {}
    if not config.get("models"):
        raise NotRecomputable("a slices configuration: not recomputed tensor by tensor")
    by_name = {r.name: r for r in provenance.inputs}
    spec = get(provenance.method).spec
    defaults = {p.name: p.default for p in spec.parameters if p.default is not MISSING}
    shared = {**defaults, **(config.get("parameters") or {})}
    base = config.get("base_model")
    others = []
    for entry in config["models"]:
        if entry["model"] == base and MERGE_METHODS[provenance.method].needs_base:
            continue
        params = {**shared, **(entry.get("parameters") or {})}
        others.append((locate(by_name[entry["model"]]), params))
    return (locate(by_name[base]) if base else None), others, shared


def _plan(provenance: MergedProvenance, locate: Callable[[MergeInputRecord], Path]):
    if provenance.engine == "mergekit":
        return _mergekit_plan(provenance, locate)
    base = next((r for r in provenance.inputs if r.role == "base"), None)
    others = [(locate(r), {"weight": r.weight}) for r in provenance.inputs if r.role == "model"]
    shared = {"normalize": provenance.method == "linear", "rescale": False}
    return (locate(base) if base else None), others, shared


def _settings(
    others: list[tuple[Path, Mapping[str, Any]]], shared: Mapping[str, Any], seed, name
) -> Settings:
    return Settings(
        weights=[float(_scalar(p.get("weight", 1.0), "weight")) for _, p in others],
        densities=[float(_scalar(p.get("density", 1.0), "density")) for _, p in others],
        normalize=bool(_scalar(shared.get("normalize", False), "normalize")),
        rescale=bool(_scalar(shared.get("rescale", False), "rescale")),
        lam=float(_scalar(shared.get("lambda", 1.0), "lambda")),
        t=float(_scalar(shared.get("t", 0.5), "t")),
        seed=seed,
        name=name,
    )


def recompute(
    merged: Checkpoint, provenance: MergedProvenance, locate: Callable[[MergeInputRecord], Path]
) -> tuple[dict[str, Any], list[str]]:
    """(figures for verification.json, problems): sampled tensors against the method's formula."""
    formula = MERGE_METHODS[provenance.method].recompute
    if formula is None:
        return {"recomputation": f"{provenance.method}: no formula in hubkit; structure and logits only"}, []
    try:
        base_dir, others, shared = _plan(provenance, locate)
        names = sample(list(merged.tensors))
        settings = {n: _settings(others, shared, provenance.seed, n) for n in names}
    except NotRecomputable as exc:
        return {"recomputation": str(exc)}, []
    base = Checkpoint(base_dir) if base_dir else None
    inputs = [Checkpoint(folder) for folder, _ in others]
    problems, worst = [], 0.0
    for name in names:
        got = merged.get(name)
        if not got.is_floating_point():
            continue
        want = formula(settings[name], base.get(name) if base else None, [c.get(name) for c in inputs])
        atol, rtol = TOLERANCES.get(merged.tensors[name].dtype, TOLERANCES["BF16"])
        diff = float((got.float() - want.to(got.dtype).float()).abs().max()) if got.numel() else 0.0
        worst = max(worst, diff)
        limit = atol + rtol * float(want.abs().max() if want.numel() else 0)
        if not diff <= limit:
            problems.append(f"{name}: differs from its {provenance.method} recomputation by {diff:.3g}")
        del got, want
    figures = {
        "recomputation": f"{len(names)} of {len(merged.tensors)} tensors recomputed with the "
        f"{provenance.method} formula"
        + (f" (seed {provenance.seed})" if provenance.seed is not None else ""),
        "recomputed_tensors": names,
        "recompute_max_abs_diff": worst,
    }
    return figures, problems
