"""Hub cards written from the artifacts, so every fact on a card was measured, never retyped.

Each card has a typed context built from one artifact folder: ``DatasetCardContext`` from a
checked dataset, ``AdapterCardContext`` from an adapter, ``MergedCardContext`` from a merged
model. Every file is read through its schema (``hubkit.schemas``), which turns a missing field
into a one-line error naming the file and the field, and a field a file may leave out but a
card cannot is checked by ``_needed`` the same way, so a card is complete or not written at all.

The contexts are rendered through the Jinja2 templates of the top-level ``cards/`` folder
(installed as ``hubkit/card_templates``) by huggingface_hub's ``DatasetCard``/``ModelCard``
``from_template``, with the metadata built by ``DatasetCardData``/``ModelCardData`` and
``EvalResult``, so the YAML front matter and ``model-index`` are what the Hub expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import HubkitError
from ..evaluate import read_eval_results
from .adapter import AdapterCardContext, adapter_context, plot_loss
from .dataset import DatasetCardContext, dataset_context
from .merged import MergedCardContext, merged_context

if TYPE_CHECKING:
    from huggingface_hub import RepoCard

CardKind = Literal["dataset", "adapter", "merged"]
CARD = "README.md"
LOSS_PLOT = "training_loss.png"

__all__ = ["CARD", "LOSS_PLOT", "card_context", "read_eval_results", "render_card", "write_card"]


# --------------------------------------------------------------------------- rendering

CardContext = DatasetCardContext | AdapterCardContext | MergedCardContext


def _template(name: str) -> str:
    return files("hubkit").joinpath("card_templates", name).read_text(encoding="utf-8")


def render_card(context: CardContext) -> RepoCard:
    """The card for a context: its metadata as front matter, its template as the body."""
    import jinja2
    from huggingface_hub import DatasetCard, ModelCard

    if isinstance(context, DatasetCardContext):
        return DatasetCard.from_template(
            context.metadata(), template_str=_template(context.TEMPLATE), card=context
        )
    limitations = jinja2.Template(_template("limitations.md")).render(card=context)
    return ModelCard.from_template(
        context.metadata(), template_str=_template(context.TEMPLATE), card=context, limitations=limitations
    )


def card_context(
    kind: CardKind, folder: str | os.PathLike[str], eval_results: str | os.PathLike[str] | None = None
) -> CardContext:
    """The facts of one card, read from its artifact folder (nothing is written)."""
    if kind == "dataset":
        if eval_results is not None:
            raise HubkitError("--eval-results: a dataset card has no evaluation results")
        return dataset_context(folder)
    builders: dict[str, Callable[..., CardContext]] = {"adapter": adapter_context, "merged": merged_context}
    return builders[kind](folder, eval_results)


def write_card(
    kind: CardKind, folder: str | os.PathLike[str], eval_results: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``README.md`` (and, for an adapter, the loss plot it shows) into an artifact folder.

    Every fact is gathered first, so a missing field stops with a one-line error before any
    file is written. ``eval_results`` (an lm-eval-harness results JSON) adds ``model-index``.
    """
    context = card_context(kind, folder, eval_results)
    card = render_card(context)
    folder = Path(folder)
    if isinstance(context, AdapterCardContext):
        plot_loss(context.loss, folder / LOSS_PLOT, f"{context.name}: training loss")
    card.save(folder / CARD)
    return folder / CARD
