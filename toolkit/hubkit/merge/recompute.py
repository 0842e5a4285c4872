"""The model-merge half of the equivalence check: sampled tensors recomputed by formula.

A model merge has no reference model to compare logits with, but it has a formula: with the
inputs and the parameters recorded in ``provenance.json`` (the weights of a hubkit merge, the
published mergekit configuration of a mergekit one, the seed of a random one), each output
tensor can be computed again with ``hubkit.formulas``, which shares no code with the engine
that made it. Up to ``SAMPLE`` tensors are recomputed (all of a small model), spread evenly
over the sorted names; any difference beyond the dtype's rounding fails the check. Parameters
given as gradients or filters are resolved for each tensor as mergekit documents them.

The same plan says what the merged model must hold (``expected``): every tensor name, with the
shape of its inputs and the dtype the configuration asks for (``out_dtype``, else ``dtype``,
else the inputs'). A ``slices`` configuration (a frankenmerge) maps each output layer to the
source layers it is made of, in order, so a merge that changes the layer count is checked
layer by layer: output layer ``i`` is slice ``k``'s layer ``i - start_k`` of each source,
the tensors before the first layer come from the first slice's sources, the others from the
last slice's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HubkitError
from ..formulas import Settings
from ..methods import MERGE_METHODS
from ..schemas import MergedProvenance, MergeInputRecord
from .checkpoint import _DTYPES, Checkpoint
from .kit import CONFIG_FILE as CONFIG

SAMPLE = 32
# |recomputed - merged| allowed: atol + rtol * max |recomputed|, by the merged weights' dtype
TOLERANCES = {"F32": (1e-6, 1e-5), "F16": (1e-3, 2e-3), "BF16": (1e-2, 1e-2)}
# a layer's tensor: its first numeric path component is the layer index (model.layers.3.mlp...)
_LAYER = re.compile(r"^(.*?\.)(\d+)(\..+)$")
_SAFETENSORS_DTYPE = {torch_name: name for name, torch_name in _DTYPES.items()}


class NotRecomputable(Exception):
    """The merge's parameters cannot be resolved per tensor here (the reason is the message)."""


# where a parameter is set, highest precedence first (a source's, its slice's, the
# configuration's, the method's defaults); the first that gives a value for a tensor wins
Scopes = tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Source:
    """What one output tensor is made of: (folder, tensor name) of the base, if any, and of
    each other input with its parameters; the parameters shared by all inputs; the tensor's
    position in its slice (0 to 1 over its layers; 0 outside them), where gradients are read."""

    base: tuple[Path, str] | None
    others: tuple[tuple[Path, str, Scopes], ...]
    shared: Scopes
    position: float = 0.0

    def first(self) -> tuple[Path, str]:
        """The input whose shape and (unless the configuration casts) dtype the output has."""
        return self.base or self.others[0][:2]


@dataclass(frozen=True)
class Plan:
    """Every output tensor's sources, and the dtypes the merge computes in and writes."""

    tensors: dict[str, Source]
    dtype: str | None = None  # the configuration's ``dtype``: inputs are cast to it
    out_dtype: str | None = None  # its ``out_dtype``: the output is cast to it


def sample(names: list[str], count: int = SAMPLE) -> list[str]:
    """Up to ``count`` names spread evenly over the sorted list (all of them when fewer)."""
    names = sorted(names)
    if len(names) <= count:
        return names
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def _evaluate(value: Any, tensor: str, position: float) -> Any:
    """A parameter's value for one tensor, as mergekit documents its settings: a scalar as
    written; a list of numbers is a gradient, interpolated linearly at ``position`` (a list
    of other values: the entry at that position); a list of ``{filter, value}`` conditions
    gives the value of the first whose filter is part of the tensor's name (none or ``*``:
    any); None when nothing applies."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise NotRecomputable(f"unexpected parameter setting {value!r}: not recomputed")
    if not value:
        return None
    if all(isinstance(v, dict) for v in value):
        for condition in value:
            pattern = condition.get("filter")
            if pattern in (None, "*") or pattern in tensor:
                return _evaluate(condition.get("value"), tensor, position)
        return None
    if not all(isinstance(v, (bool, int, float, str)) for v in value):
        raise NotRecomputable(f"unexpected parameter setting {value!r}: not recomputed")
    at = position * (len(value) - 1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return value[int(at)]
    low = int(at)
    high = min(len(value) - 1, low + 1)
    return (1 - (at - low)) * value[low] + (at - low) * value[high]


def _resolve(scopes: Scopes, key: str, tensor: str, position: float, default: Any) -> Any:
    """The first value ``scopes`` give ``key`` for ``tensor``, else ``default``."""
    for scope in scopes:
        if key in scope and (value := _evaluate(scope[key], tensor, position)) is not None:
            return value
    return default


def _torch_dtype(name: str | None) -> str | None:
    """A configuration's dtype name (``bfloat16``, ``bf16``, ...) as a safetensors dtype."""
    if name is None:
        return None
    from mergekit.common import dtype_from_name

    return _SAFETENSORS_DTYPE[str(dtype_from_name(name)).removeprefix("torch.")]


def _before_layers(folder: Path) -> set[str]:
    """The tensors that precede the first layer in the model's module order (embeddings)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    names = list(model.state_dict())
    first = next((i for i, n in enumerate(names) if _LAYER.match(n)), len(names))
    return set(names[:first])


def _layer_name(name: str, index: int) -> str:
    head, _, tail = _LAYER.match(name).groups()  # type: ignore[union-attr]
    return f"{head}{index}{tail}"


def _sources(
    sources: list[dict[str, Any]],
    base: str | None,
    shared: Scopes,
    method: str,
    folder_of: Callable[[str], Path],
    name_in: Callable[[dict[str, Any]], str],
    position: float = 0.0,
) -> Source:
    """One output tensor's Source from a slice's (or the model list's) sources.

    Parameters resolve as mergekit documents them: the source's own, then the slice's, then
    the configuration's, then the method's defaults (``shared``, highest first)."""
    needs_base = MERGE_METHODS[method].needs_base
    base_source = next((s for s in sources if s["model"] == base), None) if base else None
    others = tuple(
        (folder_of(s["model"]), name_in(s), ((s.get("parameters") or {}), *shared))
        for s in sources
        if not (needs_base and s is base_source)
    )
    return Source(
        (folder_of(base), name_in(base_source)) if base_source is not None and needs_base else None,
        others,
        shared,
        position,
    )


def _mergekit_plan(provenance: MergedProvenance, locate: Callable[[MergeInputRecord], Path]) -> Plan:
    """Every output tensor's sources, from the published mergekit configuration."""
    from mergekit.merge_methods.base import MISSING
    from mergekit.merge_methods.registry import get

    config = provenance.mergekit_config or {}
    by_name = {r.name: r for r in provenance.inputs}

    def folder_of(model: str) -> Path:
        return locate(by_name[model])

    spec = get(provenance.method).spec
    defaults = {p.name: p.default for p in spec.parameters if p.default is not MISSING}
    top = config.get("parameters") or {}
    base = config.get("base_model")
    tensors: dict[str, Source] = {}
    if config.get("models"):
        sources = [dict(m) for m in config["models"]]
        if base and all(s["model"] != base for s in sources):
            sources.append({"model": base})  # mergekit adds the base model to the inputs
        reference = Checkpoint(folder_of(base or sources[0]["model"]))
        depth = 1 + max((int(m.group(2)) for n in reference.tensors if (m := _LAYER.match(n))), default=0)
        for name in reference.tensors:
            layer = _LAYER.match(name)
            position = (int(layer.group(2)) / (depth - 1) if depth > 1 else 1.0) if layer else 0.0
            tensors[name] = _sources(
                sources, base, (top, defaults), provenance.method, folder_of, lambda s, n=name: n, position
            )
        return Plan(tensors, config.get("dtype"), config.get("out_dtype"))
    slices = config.get("slices") or []
    if not slices:
        raise HubkitError(f"{CONFIG}: neither models nor slices in the configuration")
    output_layer = 0
    for index, piece in enumerate(slices):
        sources = piece["sources"]
        lengths = {s["layer_range"][1] - s["layer_range"][0] for s in sources}
        if len(lengths) != 1:
            raise HubkitError(f"{CONFIG}: slice {index}: sources of different lengths")
        slice_base = piece.get("base_model") or base
        scopes = (piece.get("parameters") or {}, top, defaults)
        template = Checkpoint(folder_of(sources[0]["model"]))
        layer_names = [n for n in template.tensors if (m := _LAYER.match(n)) and int(m.group(2)) == 0]
        length = lengths.pop()
        for offset in range(length):
            position = offset / (length - 1) if length > 1 else 1.0
            for name in layer_names:

                def name_in(s: dict[str, Any], name: str = name, offset: int = offset) -> str:
                    return _layer_name(name, s["layer_range"][0] + offset)

                out = _layer_name(name, output_layer)
                tensors[out] = _sources(
                    sources, slice_base, scopes, provenance.method, folder_of, name_in, position
                )
            output_layer += 1
    first, last = slices[0], slices[-1]
    for piece, keep in ((first, True), (last, False)):
        folder = folder_of(piece["sources"][0]["model"])
        before = _before_layers(folder)
        scopes = (piece.get("parameters") or {}, top, defaults)
        for name in Checkpoint(folder).tensors:
            if not _LAYER.match(name) and (name in before) == keep:
                tensors[name] = _sources(
                    piece["sources"],
                    piece.get("base_model") or base,
                    scopes,
                    provenance.method,
                    folder_of,
                    lambda s, n=name: n,
                )
    return Plan(tensors, config.get("dtype"), config.get("out_dtype"))


def plan(provenance: MergedProvenance, locate: Callable[[MergeInputRecord], Path]) -> Plan:
    """What each output tensor of a model merge is made of (hubkit's merges: the same name in
    every input; mergekit's: as its configuration maps them)."""
    if provenance.engine == "mergekit":
        return _mergekit_plan(provenance, locate)
    base = next((r for r in provenance.inputs if r.role == "base"), None)
    models = [(locate(r), ({"weight": r.weight},)) for r in provenance.inputs if r.role == "model"]
    shared = ({"normalize": provenance.method == "linear", "rescale": False},)
    reference = Checkpoint(locate(base) if base else models[0][0])
    return Plan(
        {
            name: Source(
                (reference.folder, name) if base else None,
                tuple((folder, name, params) for folder, params in models),
                shared,
            )
            for name in reference.tensors
        }
    )


def expected(merge_plan: Plan) -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, safetensors dtype) of every tensor the merged model must hold."""
    cast = _torch_dtype(merge_plan.out_dtype or merge_plan.dtype)
    checkpoints: dict[Path, Checkpoint] = {}
    out = {}
    for name, source in merge_plan.tensors.items():
        folder, source_name = source.first()
        checkpoint = checkpoints.setdefault(folder, Checkpoint(folder))
        info = checkpoint.tensors[source_name]
        out[name] = (info.shape, cast or info.dtype)
    return out


def _settings(source: Source, seed: int | None, name: str) -> Settings:
    """The formula's settings for output tensor ``name``: per-input parameters are read for
    each input's own tensor name, shared ones for the output's."""
    at = source.position

    def each(key: str, default: float) -> list[float]:
        return [float(_resolve(scopes, key, tensor, at, default)) for _, tensor, scopes in source.others]

    def shared(key: str, default: Any) -> Any:
        return _resolve(source.shared, key, name, at, default)

    _, first_tensor, first_scopes = source.others[0]
    scale = _resolve(first_scopes, "scale", first_tensor, at, None)
    return Settings(
        weights=each("weight", 1.0),
        densities=each("density", 1.0),
        normalize=bool(shared("normalize", False)),
        rescale=bool(shared("rescale", False)),
        lam=float(shared("lambda", 1.0)),
        t=float(shared("t", 0.5)),
        seed=seed,
        name=name,
        gammas=each("gamma", 0.01),
        epsilons=each("epsilon", 0.15),
        filter_wise=bool(shared("filter_wise", False)),
        scale=None if scale is None else float(scale),
    )


def recompute(
    merged: Checkpoint, provenance: MergedProvenance, merge_plan: Plan
) -> tuple[dict[str, Any], list[str]]:
    """(figures for verification.json, problems): sampled tensors against the method's formula."""
    import torch

    formula = MERGE_METHODS[provenance.method].recompute
    if formula is None:
        return {"recomputation": f"{provenance.method}: no formula in hubkit; structure and logits only"}, []
    names = sample([n for n in merged.tensors if n in merge_plan.tensors])
    try:
        settings = {n: _settings(merge_plan.tensors[n], provenance.seed, n) for n in names}
    except NotRecomputable as exc:
        return {"recomputation": str(exc)}, []
    cast = getattr(torch, _DTYPES[_torch_dtype(merge_plan.dtype)]) if merge_plan.dtype else None
    checkpoints: dict[Path, Checkpoint] = {}

    def read(where: tuple[Path, str]) -> Any:
        folder, name = where
        tensor = checkpoints.setdefault(folder, Checkpoint(folder)).get(name)
        return tensor.to(cast) if cast is not None and tensor.is_floating_point() else tensor

    problems, worst = [], 0.0
    for name in names:
        got = merged.get(name)
        if not got.is_floating_point():
            continue
        source = merge_plan.tensors[name]
        base = read(source.base) if source.base else None
        want = formula(settings[name], base, [read(o[:2]) for o in source.others])
        atol, rtol = TOLERANCES.get(merged.tensors[name].dtype, TOLERANCES["BF16"])
        diff = float((got.float() - want.to(got.dtype).float()).abs().max()) if got.numel() else 0.0
        worst = max(worst, diff)
        limit = atol + rtol * float(want.abs().max() if want.numel() else 0)
        if not diff <= limit:
            problems.append(f"{name}: differs from its {provenance.method} recomputation by {diff:.3g}")
        del got, want, base
    figures = {
        "recomputation": f"{len(names)} of {len(merged.tensors)} tensors recomputed with the "
        f"{provenance.method} formula"
        + (f" (seed {provenance.seed})" if provenance.seed is not None else ""),
        "recomputed_tensors": names,
        "recompute_max_abs_diff": worst,
    }
    return figures, problems
