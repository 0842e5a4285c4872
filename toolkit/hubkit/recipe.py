"""Recipes: one YAML file that drives every stage (data, check, train, merge, cards, push).

A recipe is data, validated up front: an unknown key or a wrong type is a one-line error
that names the key and the file, before any stage starts. The ``training`` section is
passed through to TRL's ``SFTConfig``, which validates it itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .benchmarks import LEAK_CHECKED
from .errors import HubkitError, InputNotFound, format_validation_error
from .methods import MODEL_MERGES
from .prompts import TEMPLATES

DEFAULT_BENCHMARKS = list(LEAK_CHECKED)
# What the leak check calls a flagged row; the decontam rules, the CLI and the cards read these.
Category = Literal["duplicate", "gray_area", "similar_different"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
DecontamMethod = Literal["multiview", "platypus"]


def one_of(what: str, known: Collection[str]) -> AfterValidator:
    """A validator refusing a name not in ``known`` (a registry: templates, merge methods), by name."""

    def check(name: str) -> str:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(known)})")
        return name

    return AfterValidator(check)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """The base model: a Hub id, a local folder (relative to the recipe file), or ``hubkit:tiny-llama``.

    ``hubkit:tiny-llama`` names a seeded tiny Llama that ``hubkit train`` builds on demand
    into ``runs/<name>/base-model``, so the tiny recipe runs offline with nothing downloaded.
    """

    name_or_path: str
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = None


class SourceSpec(_Section):
    """One data source: a Hub dataset (``hub_id``) or a local jsonl/json/csv/parquet file (``path``).

    ``columns`` maps the Alpaca fields (``instruction``, ``input``, ``output``) to the
    source's column names; ``instruction`` and ``output`` are required. ``name`` tags each
    row (``data_source``), so it is unique among ``data.sources``.
    """

    name: str
    path: str | None = None
    hub_id: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: dict[Literal["instruction", "input", "output"], str] = Field(
        default_factory=lambda: {"instruction": "instruction", "input": "input", "output": "output"}
    )
    license: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if not self.name.strip():
            raise ValueError("name must not be empty")
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of 'path' or 'hub_id'")
        missing = {"instruction", "output"} - set(self.columns)
        if missing:
            raise ValueError(f"columns must map {sorted(missing)}")
        return self


class DedupSection(_Section):
    """Platypus removed exact duplicates (keeping the longest output) and near-duplicates."""

    exact: bool = True
    near_threshold: float | None = Field(default=0.95, gt=0, le=1)


class DataSection(_Section):
    sources: list[SourceSpec] = Field(default_factory=list)
    dedup: DedupSection = DedupSection()
    embedding_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="The sentence-transformers model near-dedup and the leak check embed with",
    )
    # training, the merge check and the cards all format prompts with it: a typo is refused at load
    prompt_template: Annotated[str, one_of("template", TEMPLATES)] = "alpaca"
    max_length: int = Field(default=4096, gt=0)
    # The dataset artifact `hubkit train` reads (a folder, relative to the recipe file, or a Hub
    # dataset id); None means the `data check` output, runs/<name>/dataset-clean.
    dataset: str | None = None

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceSpec]) -> list[SourceSpec]:
        """Rows are tagged and counted by source name, so two sources must not share one."""
        seen: set[str] = set()
        for spec in sources:
            if spec.name in seen:
                raise ValueError(f"duplicate name {spec.name!r}")
            seen.add(spec.name)
        return sources


class DecontamSection(_Section):
    """The leak check. ``on_hit`` is what train-and-push does when the built data has hits:
    ``stop`` (the default: look at the report, fix the sources) or ``remove`` (train on the
    cleaned data, as Platypus did; the certificate records what was removed)."""

    benchmarks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BENCHMARKS), description="The benchmarks checked against"
    )
    # multiview: views and a two-stage rule per benchmark (decontam/rule.py); platypus: one cut
    method: DecontamMethod = "multiview"
    threshold: float = Field(
        default=0.8, gt=0, le=1, description="The platypus method's cut: the cosine of a hit"
    )
    keep: list[Category] = Field(
        default_factory=list,
        description="Categories of flagged rows kept; recorded in the report and certificate",
    )
    benchmark_files: dict[str, str] = Field(default_factory=dict)
    on_hit: Literal["stop", "remove"] = "stop"


class LoraSection(_Section):
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["gate_proj", "up_proj", "down_proj"])
    bias: Literal["none", "all", "lora_only"] = "none"


class HubSection(_Section):
    dataset_repo: str | None = None
    adapter_repo: str | None = None
    merged_repo: str | None = None
    private: bool = False
    tags: list[str] = Field(default_factory=list)
    license: str | None = None


class TaintEntry(_Section):
    """A dataset or model id (matched case-insensitively) no merge input may descend from."""

    id: str
    reason: str
    source: str | None = None


class MergeSection(_Section):
    """Model merges (``models``/``weights``/``method``, ``base`` for task_arithmetic) and the
    taint gate's extra registry entries and named overrides (see ``hubkit merge --help``)."""

    models: list[str] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    method: Annotated[str, one_of("merge method", MODEL_MERGES)] = "linear"  # `merge adapter` folds LoRA
    base: str | None = None
    # A mergekit configuration, run instead of models/weights/method: "hubkit:fold" names this
    # recipe's adapter folded into its base, "hubkit:base" the base model it was trained on.
    config: dict[str, Any] | None = None
    taint_registry: list[TaintEntry] = Field(default_factory=list)
    allow_unverified: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind_of_merge(self) -> MergeSection:
        if self.config is not None and self.models:
            raise ValueError("give either models (with weights, method, base) or a mergekit config, not both")
        return self


class EvalGate(_Section):
    """Refuse to push a merged model whose leaderboard average is more than ``max_drop`` points
    below its best input's (the base, or each model of a model merge)."""

    max_drop: float = Field(ge=0)


class EvalSection(_Section):
    """``results``: a user's lm-eval results JSON for the cards. ``tasks``: run ``hubkit eval`` in
    train-and-push (after verify) on these leaderboard tasks, from ``decontam.benchmark_files``
    (plus ``benchmark_files`` here, e.g. winogrande); absent, the stage is skipped."""

    results: str | None = None
    tasks: list[str] = Field(default_factory=list)
    limit: int | None = Field(
        default=None, gt=0, description="Score only the first N items of each task (partial)"
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto",
        description="Batch size, or auto: the largest that fits on a GPU (lm-eval's probe), 16 on CPU",
    )
    device: str | None = Field(
        default=None,
        description="cuda, cuda:1, cpu ...; none: cuda if available. On a CPU other jobs share, "
        "OMP_NUM_THREADS=1 is often several times faster (batched tensors wait on busy threads)",
    )
    benchmark_files: dict[str, str] = Field(default_factory=dict)
    gate: EvalGate | None = None


class Recipe(_Section):
    """A whole recipe. ``source`` and ``base_dir`` say where it was read from."""

    name: str
    version: str = "v0.1.0"
    model: ModelSection
    data: DataSection = DataSection()
    decontam: DecontamSection = DecontamSection()
    lora: LoraSection = LoraSection()
    training: dict[str, Any] = Field(default_factory=dict)
    hub: HubSection = HubSection()
    merge: MergeSection = MergeSection()
    eval: EvalSection = EvalSection()
    source: str = Field(default="<memory>", exclude=True)
    base_dir: str = Field(default=".", exclude=True)

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path from the recipe: relative to the recipe file's folder, or
        ``hubkit:sample_data/...`` for the files bundled with hubkit (so the tiny recipe runs
        from any install)."""
        text = str(path)
        if text.startswith("hubkit:sample_data/"):
            from importlib.resources import files

            return Path(str(files("hubkit").joinpath(text.removeprefix("hubkit:"))))
        return (Path(self.base_dir) / path).resolve()

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (for provenance manifests and hashing)."""
        return self.model_dump(mode="json")

    def run_dir(self) -> Path:
        """Where this recipe's artifacts live by default: ``runs/<name>`` under the working directory."""
        return Path("runs") / self.name


class _Loader(yaml.SafeLoader):
    """PyYAML with YAML 1.2 scalars: ``4e-4`` is a number (YAML 1.1 makes it a string) and only
    true/false are booleans (YAML 1.1 turns ``save_strategy: no`` into False)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def default(section: type[BaseModel], field: str) -> Any:
    """A recipe section's default for ``field``: the one place a default is written, which the
    API's keyword defaults and the CLI's help read."""
    return section.model_fields[field].get_default(call_default_factory=True)


def _parse_scalar(key: str, text: str) -> Any:
    """A ``--set`` value as YAML; a value YAML cannot read is the user's to fix, so one line."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise HubkitError(f"--set {key}: value is not valid YAML ({problem})") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply ``--set a.b.c=value`` overrides (value parsed as YAML) to a raw recipe dict; a number
    steps into a list (``data.sources.0.path=x``)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HubkitError(f"--set {item!r}: expected KEY=VALUE (for example training.max_steps=10)")
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise HubkitError(
                        f"{source}: --set {key}: '{part}' is not an index of a {len(node)}-item list"
                    )
                if last:
                    node[int(part)] = _parse_scalar(key, value)
                else:
                    node = node[int(part)]
            elif not isinstance(node, dict):
                raise HubkitError(f"{source}: --set {key}: '{parts[i - 1]}' is not a section")
            elif last:
                node[part] = _parse_scalar(key, value)
            else:
                node = node.setdefault(part, {})
    return raw


def recipe_from_dict(raw: Any, source: str = "<memory>", base_dir: str | os.PathLike[str] = ".") -> Recipe:
    """Validate a raw mapping as a recipe; errors name the key and ``source``."""
    if not isinstance(raw, dict):
        raise HubkitError(f"{source}: a recipe must be a YAML mapping")
    try:
        return Recipe.model_validate({**raw, "source": source, "base_dir": str(base_dir)})
    except ValidationError as exc:
        raise HubkitError(format_validation_error(exc, source)) from None


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge key by key, anything else is replaced whole."""
    out = dict(base)
    for key, value in child.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """A recipe file's raw mapping, with ``extends: other.yaml`` (relative to it) merged underneath."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        raise InputNotFound(f"{path}: recipe file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise HubkitError(f"{path}: not a readable YAML recipe ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    parent = raw.pop("extends")
    if not isinstance(parent, str):
        raise HubkitError(f"{path}: extends: expected a recipe file name")
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen:
        raise HubkitError(f"{path}: extends: {parent} is already in the chain (a cycle)")
    base = _read_raw(parent_path, (*seen, path.resolve()))
    if not isinstance(base, dict):
        raise HubkitError(f"{parent_path}: a recipe must be a YAML mapping")
    return _merge(base, raw)


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file.

    A recipe may start with ``extends: base.yaml`` to change only some keys of another recipe
    (sections merge key by key; lists and scalars are replaced).
    """
    path = Path(path)
    raw = _read_raw(path)
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [], str(path))
    return recipe_from_dict(raw, str(path), path.resolve().parent)
