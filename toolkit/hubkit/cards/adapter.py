"""The adapter card's facts, read from an adapter artifact, and its training-loss plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schemas
from ..errors import HubkitError
from ..evaluate import read_eval_results
from ..prompts import TEMPLATES
from ..scores import EvalScore
from .facts import LeakCertificate, _hub_ids, _needed, _repo_name, _tags, model_card_data

if TYPE_CHECKING:
    from huggingface_hub import CardData


def _trained_on(provenance: schemas.AdapterProvenance) -> list[str]:
    """The Hub datasets an adapter was trained on, as ``provenance.json`` records them, not as the
    recipe names them (``--dataset`` overrides it): the artifact's Hub id, or for a local artifact
    ``hub.dataset_repo``, where the recipe publishes it; then the Hub sources of its rows."""
    own = provenance.dataset.hub_id or provenance.recipe.hub.dataset_repo
    return _hub_ids([own, *provenance.datasets])


@dataclass(frozen=True)
class Hardware:
    """What the training ran on, as ``hubkit train`` measured it."""

    processes: int
    gpus: list[str]
    cpu: str
    cpu_count: int

    def __str__(self) -> str:
        if self.gpus:
            names = sorted(set(self.gpus))
            kinds = ", ".join(f"{self.gpus.count(n)} x {n}" for n in names)
        else:
            kinds = f"CPU only: {self.cpu} ({self.cpu_count} cores)"
        return f"{kinds}; {self.processes} process{'es' if self.processes != 1 else ''}"


@dataclass(frozen=True)
class Lora:
    """The recipe's LoRA settings."""

    r: int
    alpha: int
    dropout: float
    target_modules: list[str]
    bias: str


def _duration(seconds: float) -> str:
    """``4 h 12 min (15,123.4 s)``: readable, with the measured seconds kept."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else ""
    return f"{text} ({seconds:,.1f} s)" if text else f"{seconds:,.1f} s"


@dataclass(frozen=True)
class AdapterCardContext:
    """Everything the adapter card states, read from an adapter artifact."""

    recipe_name: str
    recipe_version: str
    repo_id: str
    license: str
    tags: list[str]
    dataset_repo: str | None
    datasets: list[str]
    base_model: str
    base_revision: str | None
    lora: Lora
    training: dict[str, Any]
    prompt_template: str
    max_length: int
    trainable: int
    total_parameters: int
    trainable_percent: float
    loss: list[tuple[int, float]]
    train_loss: float
    steps: int
    tokens: int
    global_batch_size: int
    wall_time_s: float
    hardware: Hardware
    dataset_sha256: str
    dataset_rows: int
    certificate: LeakCertificate | None
    allow_unchecked_data: bool
    libraries: dict[str, str]
    scores: list[EvalScore]

    @property
    def name(self) -> str:
        return _repo_name(self.repo_id)

    @property
    def wall_time(self) -> str:
        return _duration(self.wall_time_s)

    @property
    def hyperparameters(self) -> list[tuple[str, str]]:
        """The recipe's ``training`` section, sorted, with values as the YAML recipe spells them."""
        return [
            (k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in sorted(self.training.items())
        ]

    @property
    def prompt(self) -> str:
        """The prompt wording the adapter was trained with (rows without an input)."""
        return TEMPLATES[self.prompt_template].without_input

    def metadata(self) -> CardData:
        return model_card_data(
            self.name,
            self.license,
            "peft",
            _tags(["hubkit", "peft", "lora"], self.tags),
            _hub_ids([self.base_model]),
            "adapter",
            self.datasets,
            self.scores,
        )


def adapter_context(
    folder: str | os.PathLike[str], eval_results: str | os.PathLike[str] | None = None
) -> AdapterCardContext:
    """The adapter card's facts: ``provenance.json`` (recipe, base, data, certificate), ``metrics.json``."""
    folder = Path(folder)
    card = "adapter"
    hint = " (run `hubkit train`)"
    provenance = schemas.AdapterProvenance.read(folder, needed_by=f"the {card} card", hint=hint)
    metrics = schemas.TrainingMetrics.read(folder, needed_by=f"the {card} card", hint=hint)
    where = folder / schemas.AdapterProvenance.FILE
    recipe = provenance.recipe
    if not provenance.allow_unchecked_data:
        _needed(provenance.leak_certificate, where, "leak_certificate", card)
    if not metrics.loss:
        raise HubkitError(
            f"{folder / schemas.TrainingMetrics.FILE}: field 'loss' is empty; the adapter card plots it"
        )
    return AdapterCardContext(
        recipe_name=recipe.name,
        recipe_version=recipe.version,
        repo_id=_needed(recipe.hub.adapter_repo, where, "recipe.hub.adapter_repo", card),
        license=_needed(recipe.hub.license, where, "recipe.hub.license", card),
        tags=list(recipe.hub.tags),
        dataset_repo=recipe.hub.dataset_repo,
        datasets=_trained_on(provenance),
        base_model=provenance.base_model.name_or_path,
        base_revision=provenance.base_model.resolved_revision,
        lora=Lora(
            r=recipe.lora.r,
            alpha=recipe.lora.alpha,
            dropout=recipe.lora.dropout,
            target_modules=list(recipe.lora.target_modules),
            bias=recipe.lora.bias,
        ),
        training=dict(recipe.training),
        prompt_template=recipe.data.prompt_template,
        max_length=recipe.data.max_length,
        trainable=metrics.trainable_parameters.trainable,
        total_parameters=metrics.trainable_parameters.total,
        trainable_percent=metrics.trainable_parameters.percent,
        loss=[(p.step, p.loss) for p in metrics.loss],
        train_loss=metrics.train_loss,
        steps=metrics.global_step,
        tokens=metrics.tokens_seen,
        global_batch_size=metrics.global_batch_size,
        wall_time_s=metrics.wall_time_s,
        hardware=Hardware(
            processes=metrics.hardware.processes,
            gpus=list(metrics.hardware.gpus),
            cpu=metrics.hardware.cpu,
            cpu_count=metrics.hardware.cpu_count,
        ),
        dataset_sha256=provenance.dataset.data_sha256,
        dataset_rows=provenance.dataset.rows,
        certificate=(
            LeakCertificate.of(provenance.leak_certificate, where, card, "leak_certificate.")
            if provenance.leak_certificate
            else None
        ),
        allow_unchecked_data=provenance.allow_unchecked_data,
        libraries=dict(provenance.libraries),
        scores=read_eval_results(eval_results) if eval_results else [],
    )


def plot_loss(points: Sequence[tuple[int, float]], path: str | os.PathLike[str], title: str) -> Path:
    """Save the training-loss curve as a PNG (Agg, no pyplot state, no version stamp in the file)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    steps, losses = zip(*points, strict=True)
    ax.plot(steps, losses, color="tab:blue", linewidth=1.5, marker="." if len(points) <= 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return Path(path)
