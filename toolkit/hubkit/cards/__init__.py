"""Hub cards written from the artifacts, so every fact on a card was measured, never retyped.

Each card kind (``CARD_KINDS``: template, context, repo type, the recipe's hub key) has a typed
context built from one artifact folder, in its own module: ``DatasetCardContext`` from a checked
dataset (``dataset``), ``AdapterCardContext`` from an adapter (``adapter``),
``MergedCardContext`` from a merged model (``merged``); what they share is in ``facts``. Every
file is read through its schema (``hubkit.schemas``), which turns a missing field into a
one-line error naming the file and the field, and a field a file may leave out but a card
cannot is checked by ``_needed`` the same way, so a card is complete or not written at all.

The contexts are rendered through the Jinja2 templates of the top-level ``cards/`` folder
(installed as ``hubkit/card_templates``) by huggingface_hub's ``DatasetCard``/``ModelCard``
``from_template``, with the metadata built by ``DatasetCardData``/``ModelCardData`` and
``EvalResult``, so the YAML front matter and ``model-index`` are what the Hub expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import HubkitError
from ..evaluate import read_eval_results
from ..publish import RepoType
from .adapter import AdapterCardContext, adapter_context, plot_loss
from .dataset import DatasetCardContext, dataset_context
from .merged import MergedCardContext, merged_context

if TYPE_CHECKING:
    from huggingface_hub import RepoCard

CardKind = Literal["dataset", "adapter", "merged"]
CARD = "README.md"
LOSS_PLOT = "training_loss.png"

__all__ = [
    "CARD",
    "CARD_KINDS",
    "LOSS_PLOT",
    "card_context",
    "read_eval_results",
    "render_card",
    "write_card",
]

CardContext = DatasetCardContext | AdapterCardContext | MergedCardContext


@dataclass(frozen=True)
class CardKindSpec:
    """One kind of card: its template, how its facts are read, and where the artifact is published."""

    name: CardKind
    template: str  # under ``card_templates/``
    context: type[CardContext]
    build: Callable[..., CardContext]  # (folder, [eval_results]) -> its context
    repo_type: RepoType  # a dataset card (DatasetCard) or a model card (ModelCard, + limitations)
    hub_key: str  # the recipe's ``hub`` field naming its repo
    scored: bool  # takes evaluation results (its ``model-index``)


CARD_KINDS: dict[str, CardKindSpec] = {
    k.name: k
    for k in (
        CardKindSpec(
            "dataset",
            template="dataset_card.md",
            context=DatasetCardContext,
            build=dataset_context,
            repo_type="dataset",
            hub_key="dataset_repo",
            scored=False,
        ),
        CardKindSpec(
            "adapter",
            template="adapter_card.md",
            context=AdapterCardContext,
            build=adapter_context,
            repo_type="model",
            hub_key="adapter_repo",
            scored=True,
        ),
        CardKindSpec(
            "merged",
            template="merged_card.md",
            context=MergedCardContext,
            build=merged_context,
            repo_type="model",
            hub_key="merged_repo",
            scored=True,
        ),
    )
}


def _template(name: str) -> str:
    return files("hubkit").joinpath("card_templates", name).read_text(encoding="utf-8")


def render_card(context: CardContext) -> RepoCard:
    """The card for a context: its metadata as front matter, its template as the body."""
    import jinja2
    from huggingface_hub import DatasetCard, ModelCard

    kind = next(k for k in CARD_KINDS.values() if isinstance(context, k.context))
    if kind.repo_type == "dataset":
        template = _template(kind.template)
        return DatasetCard.from_template(context.metadata(), template_str=template, card=context)
    limitations = jinja2.Template(_template("limitations.md")).render(card=context)
    return ModelCard.from_template(
        context.metadata(), template_str=_template(kind.template), card=context, limitations=limitations
    )


def card_context(
    kind: CardKind,
    folder: str | os.PathLike[str],
    eval_results: str | os.PathLike[str] | None = None,
    compare: Mapping[str, str | os.PathLike[str]] | None = None,
) -> CardContext:
    """The facts of one card, read from its artifact folder (nothing is written)."""
    if compare:
        if kind != "merged" or eval_results is None:
            raise HubkitError("--compare: only a merged card with --eval-results shows other models' scores")
        return merged_context(folder, eval_results, compare)
    spec = CARD_KINDS[kind]
    if spec.scored:
        return spec.build(folder, eval_results)
    if eval_results is not None:
        raise HubkitError(f"--eval-results: a {kind} card has no evaluation results")
    return spec.build(folder)


def write_card(
    kind: CardKind,
    folder: str | os.PathLike[str],
    eval_results: str | os.PathLike[str] | None = None,
    compare: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``README.md`` (and, for an adapter, the loss plot it shows) into an artifact folder.

    Every fact is gathered first, so a missing field stops with a one-line error before any
    file is written. ``eval_results`` (an lm-eval-harness results JSON) adds ``model-index``;
    ``compare`` (merged card only) adds other models' scores beside it (not to ``model-index``).
    """
    context = card_context(kind, folder, eval_results, compare)
    card = render_card(context)
    folder = Path(folder)
    if isinstance(context, AdapterCardContext):
        plot_loss(context.loss, folder / LOSS_PLOT, f"{context.name}: training loss")
    card.save(folder / CARD)
    return folder / CARD
