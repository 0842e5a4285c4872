"""Streaming merges: a LoRA adapter folded into its base, and weighted merges of whole models.

Both follow mergekit's discipline: every check (taint gate, shapes, architectures, corrupt
or missing shards) runs before anything is written; then the reference model's tensors are
read one at a time, combined in fp32, cast back to their own dtype and appended to the output
shard at once (``ShardWriter``). Peak memory is a few copies of the largest tensor (plus the
adapter), and the output appears only when complete (``atomic_folder``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..artifacts import (
    artifact_kind,
    atomic_folder,
    digest_of,
    hash_files,
    is_up_to_date,
    read_json,
    write_json,
    write_manifest,
)
from ..errors import HubkitError
from ..methods import MERGE_METHODS, MODEL_MERGES
from ..portable import portable_ref, relative_to_artifact, remember_location
from ..recipe import MergeSection, TaintEntry
from ..schemas import MERGED as KIND
from ..schemas import PROVENANCE, Manifest, MergedProvenance
from . import kit
from .checkpoint import Checkpoint, ShardWriter, copy_model_files, parse_size, resolve_model
from .kit import flags_config
from .lora import LoraAdapter
from .taint import ModelInput, load_registry, run_gate, trained_base
from .verify import require_verified_if_merged


def _versions() -> dict[str, str]:
    out = {}
    for package in ("hubkit", "torch", "safetensors", "peft", "transformers", "mergekit"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def _digest(model: ModelInput) -> str:
    """What an input was, for the manifest: its hubkit content hash, Hub commit, or file hashes."""
    if artifact_kind(model.path) is not None:
        return Manifest.read(model.path).content_hash
    if model.revision:
        return f"{model.id}@{model.revision}"
    return digest_of(hash_files(model.path))


def _check_out(out: Path, inputs: Sequence[ModelInput]) -> None:
    """Refuse an output folder that is (or is inside) an input, or that holds something else."""
    target = out.resolve()
    for model in inputs:
        if target == model.path or model.path in target.parents:
            raise HubkitError(f"--out {out}: is inside the input {model.id}; pick another folder")
    if target.exists():
        if artifact_kind(target) != KIND:
            raise HubkitError(
                f"--out {out}: exists and is not a merged model; remove it or pick another folder"
            )


def _check_unquantized(checkpoint: Checkpoint) -> dict[str, Any]:
    config = checkpoint.config()
    if config.get("quantization_config"):
        raise HubkitError(f"{checkpoint.name}: quantized weights; merge into an unquantized base")
    return config


def _stream(
    reference: Checkpoint,
    others: Sequence[Checkpoint],
    out: Path,
    combine: Callable[[str, list[Any]], Any],
    max_shard_size: str | int | None,
    unchanged: Callable[[str], bool] = lambda name: False,
) -> None:
    """Write ``combine(name, [reference tensor, *other tensors])`` for every reference tensor.

    Tensors are read one at a time, combined and written at once, shard after shard in the
    reference's layout. ``unchanged`` names tensors ``combine`` would return as they are:
    those are copied byte for byte without being read.
    """
    max_bytes = parse_size(max_shard_size) if isinstance(max_shard_size, str) else max_shard_size

    def make(name: str) -> Any:
        return None if unchanged(name) else combine(name, [c.get(name) for c in (reference, *others)])

    ShardWriter(reference, out, max_bytes).write(make, desc=f"merging {Path(reference.name).name}")


def _write_artifact(
    out: Path,
    inputs: Sequence[ModelInput],
    gate: dict[str, Any],
    write_weights: Callable[[Path], None],
    files_from: Path | None,
    tokenizer_from: Path | None = None,
    weights: Sequence[float] | None = None,
    force: bool = False,
    names: dict[str, str] | None = None,
    **fields: Any,
) -> Path:
    """Weights, model files, provenance.json and manifest.json, all in one atomic folder.

    ``files_from`` None: ``write_weights`` writes the config and tokenizer too (mergekit does).
    ``names`` maps an input's id to its name in ``mergekit_config.yml``, recorded with it.
    A folder already made from the same inputs, registry and settings is kept (unless
    ``force``), so a re-run after a crash resumes instead of merging again.
    """
    digests = {m: _digest(m) for m in inputs}
    manifest_inputs = {
        **{f"{m.role}:{portable_ref(m.id)}": digests[m] for m in inputs},
        "registry": gate["registry"]["sha256"],
        "settings": digest_of({k: v for k, v in fields.items() if k not in ("adapter_provenance", "recipe")}),
    }
    if not force and is_up_to_date(out, manifest_inputs):
        return out
    model_weights = iter(weights or [])
    # published: an input is named by its Hub id or base name, a local one found relative to ``out``
    records = [
        {
            "id": portable_ref(m.id),
            "role": m.role,
            "path": None if m.revision else relative_to_artifact(m.path, out),
            "revision": m.revision,
            "sha256": digests[m],
        }
        | ({"weight": next(model_weights)} if weights and m.role == "model" else {})
        | ({"name": names[m.id]} if names else {})
        for m in inputs
    ]
    for m in inputs:
        if not m.revision:
            remember_location(digests[m], m.path)
    for record in gate["inputs"]:
        record["id"] = portable_ref(record["id"])
        record["ancestors"] = [portable_ref(a) for a in record["ancestors"]]
    gate["allow_unverified"] = [portable_ref(ref) for ref in gate["allow_unverified"]]
    for key in ("base_model", "adapter"):
        if key in fields:
            fields[key] = portable_ref(fields[key])
    if "models" in fields:
        fields["models"] = [portable_ref(ref) for ref in fields["models"]]
    with atomic_folder(out) as tmp:
        write_weights(tmp)
        if files_from is not None:
            copy_model_files(files_from, tmp, tokenizer_from)
        provenance = MergedProvenance(
            **fields,
            inputs=records,
            taint_gate=gate,
            allow_unverified=[r["id"] for r in gate["inputs"] if r["override"]],
            libraries=_versions(),
        )
        write_json(tmp / PROVENANCE, provenance.to_json_dict())
        write_manifest(
            tmp,
            KIND,
            inputs=manifest_inputs,
            method=fields["method"],
            verification=None,
        )
    return out


def merge_adapter(
    adapter: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    base: str | None = None,
    base_revision: str | None = None,
    registry: Sequence[TaintEntry] | None = None,
    allow_unverified: Sequence[str] = (),
    max_shard_size: str | int | None = None,
    recipe: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Fold a LoRA adapter into its base (``W += B·A·alpha/r``), streaming tensor by tensor.

    ``base`` defaults to the adapter's ``base_model_name_or_path`` (else its provenance's
    ``base_model``): a folder or a Hub id, fetched from the current endpoint. The output
    keeps the base's dtype and shard layout (or re-shards at ``max_shard_size``) and gets
    the base's config and the tokenizer.
    ``recipe`` (a recipe's ``to_dict()``), when given, is recorded in the provenance for the card.
    An output already made from the same inputs is kept unless ``force``.
    """
    adapter_ref = str(adapter)
    adapter_dir, adapter_rev = resolve_model(adapter_ref)
    lora = LoraAdapter(adapter_dir, adapter_ref)
    adapter_prov = read_json(adapter_dir / PROVENANCE) if (adapter_dir / PROVENANCE).is_file() else None
    trained_ref, trained_rev = trained_base(adapter_prov or {})
    base_ref = base or _beside(adapter_dir, lora.base_model) or trained_ref
    if not base_ref:
        raise HubkitError(f"{adapter_ref}: adapter_config.json and provenance.json name no base; pass --base")
    if base_revision is None and base is None:
        base_revision = trained_rev or lora.config.get("revision")
    base_dir, base_commit = resolve_model(base_ref, base_revision)
    inputs = [
        ModelInput(base_ref, "base", base_dir, base_commit or base_revision),
        ModelInput(adapter_ref, "adapter", adapter_dir, adapter_rev),
    ]
    gate = run_gate(inputs, load_registry() if registry is None else registry, allow_unverified)
    checkpoint = Checkpoint(base_dir, base_ref)
    _check_unquantized(checkpoint)
    lora.check_against(checkpoint)
    _check_out(Path(out_dir), inputs)
    touched = lora.touched()
    prov = adapter_prov or {}
    return _write_artifact(
        Path(out_dir),
        inputs,
        gate,
        lambda tmp: _stream(
            checkpoint,
            [],
            tmp,
            lambda name, ts: lora.apply(name, ts[0]),
            max_shard_size,
            unchanged=lambda name: name not in touched,
        ),
        files_from=base_dir,
        tokenizer_from=adapter_dir,
        force=force,
        method="lora",
        max_shard_size=max_shard_size,
        recipe=recipe,
        base_model=base_ref,
        base_revision=base_commit or base_revision,
        adapter=adapter_ref,
        lora={k: lora.config.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")},
        touched_tensors=sorted(lora.touched()),
        leak_certificate=prov.get("leak_certificate"),
        allow_unchecked_data=prov.get("allow_unchecked_data"),
        adapter_provenance=adapter_prov,
    )


def _beside(adapter_dir: Path, base: str | None) -> str | None:
    """An adapter's base as its config names it: a relative folder (how hubkit records a local
    base) is relative to the adapter, as long as it is there; anything else as it is."""
    if base and not Path(base).is_absolute() and (adapter_dir / base).is_dir():
        return str((adapter_dir / base).resolve())
    return base


def _check_compatible(
    reference: Checkpoint, others: Sequence[Checkpoint], *, same_depth: bool = True
) -> None:
    """Same architecture, same tensor names, same shapes, or a one-line refusal naming both models.

    ``same_depth=False`` (a ``slices`` configuration, which may stack layers of models of other
    depths) compares the tensors both models hold: architecture and widths, not the layer count."""
    ref_config = _check_unquantized(reference)
    for other in others:
        config = _check_unquantized(other)
        for key in ("model_type", "architectures"):
            if config.get(key) != ref_config.get(key):
                raise HubkitError(
                    f"{other.name}: {key} {config.get(key)!r} differs from {reference.name}'s "
                    f"{ref_config.get(key)!r}; only models of one architecture merge"
                )
        missing = sorted(set(reference.tensors) - set(other.tensors))
        extra = sorted(set(other.tensors) - set(reference.tensors))
        if (missing or extra) and same_depth:
            which = f"lacks tensor {missing[0]}" if missing else f"has extra tensor {extra[0]}"
            raise HubkitError(f"{other.name}: {which} (compared with {reference.name})")
        for name, info in sorted(reference.tensors.items()):
            if name in other.tensors and other.tensors[name].shape != info.shape:
                raise HubkitError(
                    f"{other.name}: tensor {name} has shape {list(other.tensors[name].shape)}, "
                    f"{reference.name} has {list(info.shape)}"
                )


def _require_verified_inputs(inputs: Sequence[ModelInput]) -> None:
    """Refuse a hubkit merged input (an adapter fold, or an earlier model merge) that has not
    passed its equivalence check: a model merge's own check is only structural, so a wrong
    fold would otherwise be passed on unseen."""
    for model in inputs:
        require_verified_if_merged(model.path)


def merge_models(
    models: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    weights: Sequence[float] | None = None,
    method: str = MergeSection.model_fields["method"].default,
    base: str | None = None,
    registry: Sequence[TaintEntry] | None = None,
    allow_unverified: Sequence[str] = (),
    max_shard_size: str | int | None = None,
    recipe: dict[str, Any] | None = None,
    force: bool = False,
    densities: Sequence[float] | None = None,
    t: float | None = None,
    seed: int | None = None,
) -> Path:
    """Merge whole models of one architecture by a ``method`` of ``hubkit.methods.MODEL_MERGES``.

    hubkit's own engine streams tensor by tensor (``linear``: the weighted average ``sum(w_i *
    W_i) / sum(w_i)``, the Stable-Platypus2 kind of merge; ``task_arithmetic``: ``W_base +
    sum(w_i * (W_i - W_base))`` with a ``base``); the output takes the reference model's (the
    base's, or the first model's) dtype, shard layout, config and tokenizer. The other methods
    (TIES, DARE, SLERP...) run on mergekit through ``merge_config``, with ``densities``, ``t``
    and (for random ones) ``seed``. ``recipe`` is recorded in the provenance, as for
    ``merge_adapter``. A hubkit merged input must have passed ``verify_merge`` first.
    """
    spec = MERGE_METHODS.get(method)
    if spec is None or spec.inputs != "models":
        raise HubkitError(f"--method {method!r}: expected one of {', '.join(MODEL_MERGES)}")
    if spec.needs_base and not base:
        raise HubkitError(f"--method {method} needs --base (the model the task vectors start from)")
    if base and not spec.needs_base:
        using = [m for m in MODEL_MERGES if MERGE_METHODS[m].needs_base]
        raise HubkitError(f"--base is only used by --method {' or '.join(using)}")
    if len(models) < (1 if base else 2):
        raise HubkitError(f"merge models: give at least {1 if base else 2} models")
    weights = list(weights) if weights else [spec.default_weight] * len(models)
    if len(weights) != len(models):
        raise HubkitError(f"--weights: {len(weights)} weight(s) for {len(models)} model(s)")
    if not spec.weights_may_sum_to_zero and sum(weights) == 0:
        raise HubkitError(f"--weights: a {method} merge needs weights that do not sum to 0")
    for flag, given in (("density", densities), ("t", t)):
        if given is not None and given != [] and flag not in spec.parameters:
            raise HubkitError(f"--{flag}: not a parameter of --method {method}")
    if seed is not None and not spec.random:
        raise HubkitError(f"--seed: --method {method} draws no random masks")
    if densities and len(densities) not in (1, len(models)):
        raise HubkitError(f"--density: {len(densities)} value(s) for {len(models)} model(s)")
    if spec.engine == "mergekit":
        config = flags_config(method, models, base, weights, densities, t)
        return merge_config(
            config,
            out_dir,
            source="--method " + method,
            registry=registry,
            allow_unverified=allow_unverified,
            max_shard_size=max_shard_size,
            recipe=recipe,
            force=force,
            seed=seed,
        )

    refs = ([base] if base else []) + list(models)
    roles = (["base"] if base else []) + ["model"] * len(models)
    inputs = []
    for ref, role in zip(refs, roles, strict=True):
        path, commit = resolve_model(ref)
        inputs.append(ModelInput(ref, role, path, commit))
    gate = run_gate(inputs, load_registry() if registry is None else registry, allow_unverified)
    _require_verified_inputs(inputs)
    checkpoints = [Checkpoint(m.path, m.id) for m in inputs]
    reference, others = checkpoints[0], checkpoints[1:]
    _check_compatible(reference, others)
    _check_out(Path(out_dir), inputs)

    def combine(name: str, tensors: list[Any]) -> Any:
        return spec.combine(weights, tensors)

    return _write_artifact(
        Path(out_dir),
        inputs,
        gate,
        lambda tmp: _stream(reference, others, tmp, combine, max_shard_size),
        files_from=reference.folder,
        weights=weights,
        force=force,
        method=method,
        max_shard_size=max_shard_size,
        recipe=recipe,
        base_model=base,
        models=list(models),
    )


def merge_config(
    config: dict[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    source: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    registry: Sequence[TaintEntry] | None = None,
    allow_unverified: Sequence[str] = (),
    max_shard_size: str | int | None = None,
    recipe: dict[str, Any] | None = None,
    force: bool = False,
    seed: int | None = None,
) -> Path:
    """Run a mergekit configuration (a YAML file or its mapping, unchanged) behind the gates.

    Every model it names passes the taint gate, the verified-input check and the architecture
    check before mergekit writes, into the temporary folder of an atomic artifact. Local
    folders are found relative to ``base_dir`` (default: the YAML file's folder, else the
    working directory). A random method runs with ``seed`` (default 0), recorded for the
    verification. The folder gets ``mergekit_config.yml`` naming inputs by Hub id or folder
    name (never a local path) and hubkit's ``provenance.json``; no README until ``hubkit card``.
    """
    if isinstance(config, dict):
        raw, where = config, source or "mergekit configuration"
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        raw, where = kit.read_config(config), source or str(config)
        folder = Path(base_dir) if base_dir is not None else Path(config).resolve().parent
    parsed = kit.check_config(raw, where)
    spec = MERGE_METHODS[parsed.merge_method]
    if seed is not None and not spec.random:
        raise HubkitError(f"--seed: merge_method {parsed.merge_method} draws no random masks")
    inputs = kit.resolve_inputs(kit.config_models(parsed), folder)
    gate = run_gate(inputs, load_registry() if registry is None else registry, allow_unverified)
    _require_verified_inputs(inputs)
    checkpoints = [Checkpoint(m.path, m.id) for m in inputs]
    reference = checkpoints[0]
    _check_compatible(reference, checkpoints[1:], same_depth=not parsed.slices)
    _check_out(Path(out_dir), inputs)
    if spec.random and seed is None:
        seed = kit.DEFAULT_SEED
    published, text = kit.public_config(parsed, inputs, {m: _digest(m) for m in inputs})
    width = max(info.nbytes // max(1, math.prod(info.shape)) for info in reference.tensors.values())
    max_bytes = parse_size(max_shard_size) if isinstance(max_shard_size, str) else max_shard_size
    local = kit.local_config(parsed, inputs)

    def write(tmp: Path) -> None:
        kit.run_mergekit(local, tmp, seed=seed, shard_params=max_bytes // width if max_bytes else None)
        (tmp / kit.CONFIG_FILE).write_text(text, encoding="utf-8")

    base = next((m.id for m in inputs if m.role == "base"), None)
    return _write_artifact(
        Path(out_dir),
        inputs,
        gate,
        write,
        files_from=None,
        force=force,
        names={m.id: kit.public_name(m) for m in inputs},
        method=parsed.merge_method,
        engine="mergekit",
        mergekit_config=published,
        seed=seed if spec.random else None,
        max_shard_size=max_shard_size,
        recipe=recipe,
        base_model=base,
        models=[m.id for m in inputs if m.role == "model"],
    )
