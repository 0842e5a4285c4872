"""Model merges run by mergekit, behind hubkit's gates.

A mergekit configuration (its YAML, unchanged) is read with mergekit's own
``MergeConfiguration``; every model it names (``models``, ``base_model``, ``slices``, Hub ids
included) is fetched or found, passes the taint gate and the architecture check, and only
then does ``run_merge`` write, into the temporary folder of an atomic artifact. mergekit reads
the very folders the gate judged: the configuration it runs names them by local path, while
the ``mergekit_config.yml`` written beside the weights names each input as the user did (a Hub
id pinned at the commit fetched) or, for a local folder, by its folder name, with the sha256
of every input in its header: never an absolute path. mergekit's own README (which records
local paths) is not written; ``hubkit card merged`` writes the card.

Random methods (DARE, DELLA) draw their masks from torch's global generator. hubkit seeds it
per tensor (``formulas.tensor_seed`` of the recorded seed and the tensor's name) right before
mergekit merges that tensor, so ``hubkit verify merge`` can draw any tensor's masks again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import HubkitError
from ..methods import MERGE_METHODS, MODEL_MERGES
from .taint import ModelInput

CONFIG_FILE = "mergekit_config.yml"
DEFAULT_SEED = 0
# What a recipe's merge.config may name besides models: the recipe's own fold and base model
FOLD, BASE = "hubkit:fold", "hubkit:base"
# where a configuration names a model (``source``: a tokenizer's, in its ``tokenizer`` section)
_MODEL_KEYS = ("model", "base_model", "tokenizer_source", "source")
_TOKENIZER_KEYWORDS = ("union", "base")


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A mergekit YAML file as a mapping (checked by ``check_config`` before use)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubkitError(f"{path}: mergekit configuration not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise HubkitError(f"{path}: not a readable YAML file ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise HubkitError(f"{path}: expected a mergekit configuration (a mapping with merge_method)")
    return raw


def check_config(raw: dict[str, Any], source: str):
    """mergekit's ``MergeConfiguration`` of ``raw``, with a method hubkit can gate, card and verify."""
    from mergekit.config import MergeConfiguration
    from pydantic import ValidationError

    from ..errors import format_validation_error

    try:
        config = MergeConfiguration.model_validate(raw)
    except ValidationError as exc:
        raise HubkitError(format_validation_error(exc, source)) from None
    except RuntimeError as exc:  # mergekit's own validators raise RuntimeError
        raise HubkitError(f"{source}: {exc}") from None
    if config.merge_method not in MODEL_MERGES:
        raise HubkitError(
            f"{source}: merge_method {config.merge_method!r} is not one hubkit gates and verifies "
            f"(known: {', '.join(MODEL_MERGES)})"
        )
    if config.modules:
        raise HubkitError(f"{source}: 'modules' configurations are not supported; use models or slices")
    for model in config.referenced_models():
        if model.lora is not None:
            raise HubkitError(
                f"{source}: {model}: a model+LoRA reference; fold the adapter first with "
                "`hubkit merge adapter` (its fold is checked against peft) and name the result"
            )
        if model.override_architecture:
            raise HubkitError(f"{source}: {model.model}: override_architecture is not supported")
    return config


def _walk_models(obj: Any, fn: Callable[[str], str]) -> Any:
    """``obj`` (a configuration dumped to JSON types) with every model reference mapped by ``fn``."""
    if isinstance(obj, list):
        return [_walk_models(item, fn) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        keyword = key in ("tokenizer_source", "source") and value in _TOKENIZER_KEYWORDS
        if key in _MODEL_KEYS and isinstance(value, str) and not keyword:
            out[key] = fn(value)
        else:
            out[key] = _walk_models(value, fn)
    return out


def rename_models(raw: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A configuration with the models named in ``names`` renamed (``hubkit:fold`` to its folder)."""
    return _walk_models(raw, lambda ref: names.get(ref, ref))


def config_models(config) -> list[tuple[str, str]]:
    """(reference as written, role) of every model the configuration names, base first, in order."""
    dumped = config.model_dump(mode="json", exclude_none=True)
    refs: list[str] = []
    _walk_models(dumped, lambda ref: refs.append(ref) or ref)
    base = str(config.base_model) if config.base_model else None
    ordered = list(dict.fromkeys([*([base] if base else []), *refs]))
    return [(ref, "base" if ref == base else "model") for ref in ordered]


def resolve_inputs(refs: Sequence[tuple[str, str]], base_dir: Path) -> list[ModelInput]:
    """Each ``path[@revision]`` as a local folder (relative to ``base_dir``) or a Hub snapshot;
    an input's id is the path as written, its revision the commit fetched."""
    from .checkpoint import resolve_model

    inputs = []
    for ref, role in refs:
        path, _, revision = ref.partition("@")
        local = base_dir / Path(path).expanduser()
        folder, commit = resolve_model(str(local) if local.is_dir() else path, revision or None)
        inputs.append(ModelInput(path, role, folder, commit or revision or None))
    return inputs


def _by_path(inputs: Sequence[ModelInput], value: Callable[[ModelInput], str]) -> Callable[[str], str]:
    """Map a configuration's ``path[@revision]`` reference to ``value`` of its input."""
    table = {m.id: value(m) for m in inputs}
    return lambda ref: table[ref.partition("@")[0]]


def public_name(model: ModelInput) -> str:
    """How ``mergekit_config.yml`` names an input: its Hub id at the commit fetched, or its
    folder's name (the sha256 in the file's header says which folder)."""
    return f"{model.id}@{model.revision}" if model.revision else model.path.name


def public_config(config, inputs: Sequence[ModelInput], digests: dict[ModelInput, str]) -> tuple[dict, str]:
    """The configuration as published (a mapping, and its YAML with the inputs' hashes on top)."""
    mapping = _walk_models(config.model_dump(mode="json", exclude_none=True), _by_path(inputs, public_name))
    header = ["# mergekit configuration as hubkit ran it; inputs pinned by content hash or commit:"]
    header += [f"#   {public_name(m)}: {digests[m]}" for m in inputs]
    return mapping, "\n".join(header) + "\n" + yaml.safe_dump(mapping, sort_keys=False)


def local_config(config, inputs: Sequence[ModelInput]):
    """The configuration mergekit runs: every model named by the folder the gate judged."""
    from mergekit.config import MergeConfiguration

    folders = _by_path(inputs, lambda m: str(m.path))
    return MergeConfiguration.model_validate(
        _walk_models(config.model_dump(mode="json", exclude_none=True), folders)
    )


@contextlib.contextmanager
def _seeded_per_tensor(seed: int) -> Iterator[None]:
    """Seed torch's generator from (``seed``, tensor name) before mergekit merges each tensor.

    mergekit seeds once per run, so a tensor's masks depend on every tensor merged before it
    (in its scheduler's order); seeded per tensor, they depend on the tensor alone.
    """
    import torch
    from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

    from ..formulas import tensor_seed

    execute = ExecuteMergeMethodTask.execute

    def seeded(self, *args: Any, **kwargs: Any) -> Any:
        torch.manual_seed(tensor_seed(seed, self.output_weight.name))
        return execute(self, *args, **kwargs)

    ExecuteMergeMethodTask.execute = seeded  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExecuteMergeMethodTask.execute = execute  # type: ignore[method-assign]


def run_mergekit(config, out: Path, *, seed: int | None, shard_params: int | None) -> None:
    """``run_merge`` on CPU into ``out``: weights, config and tokenizer, no README."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    options = MergeOptions(
        device="cpu",
        copy_tokenizer=True,
        write_model_card=False,
        random_seed=seed,
        quiet=True,
        **({"out_shard_size": shard_params} if shard_params else {}),
    )
    random = MERGE_METHODS[config.merge_method].random
    with _seeded_per_tensor(seed) if random and seed is not None else contextlib.nullcontext():
        try:
            run_merge(config, str(out), options)
        except (RuntimeError, ValueError) as exc:
            line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise HubkitError(f"mergekit refused the merge: {line}") from None


def flags_config(
    method: str,
    models: Sequence[str],
    base: str | None,
    weights: Sequence[float] | None,
    densities: Sequence[float] | None,
    t: float | None,
) -> dict[str, Any]:
    """The mergekit configuration ``hubkit merge models --method ...`` stands for."""
    spec = MERGE_METHODS[method]
    entries: list[dict[str, Any]] = []
    for i, model in enumerate(models):
        params: dict[str, Any] = {}
        if weights and "weight" in spec.parameters:
            params["weight"] = weights[i]
        elif "weight" in spec.parameters:
            params["weight"] = spec.default_weight
        if densities and "density" in spec.parameters:
            params["density"] = densities[i] if len(densities) > 1 else densities[0]
        entries.append({"model": model, **({"parameters": params} if params else {})})
    config: dict[str, Any] = {"merge_method": method, "models": entries}
    if base:
        config["base_model"] = base
    if t is not None:
        config["parameters"] = {"t": t}
    return config
