"""Prompt templates: Alpaca rows to TRL's prompt-completion format.

Platypus trained with the Alpaca template (alpaca-lora's ``templates/alpaca.json``), one
wording with an ``input`` and one without. Keeping the prompt and the response in separate
``prompt``/``completion`` columns lets TRL mask the prompt out of the loss and append EOS
itself, so hubkit never builds labels by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class Template(NamedTuple):
    """A prompt template: one wording for rows with an ``input``, one for rows without."""

    with_input: str
    without_input: str


TEMPLATES: dict[str, Template] = {
    "alpaca": Template(
        with_input=(
            "Below is an instruction that describes a task, paired with an input that provides further "
            "context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
        ),
        without_input=(
            "Below is an instruction that describes a task. Write a response that appropriately completes "
            "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
        ),
    ),
}


def format_prompt(row: Mapping[str, str | None], template: str = "alpaca") -> str:
    """The prompt for an Alpaca row; the ``input`` wording is used only when the input is non-empty."""
    tmpl = TEMPLATES[template]
    text = tmpl.with_input if (row.get("input") or "").strip() else tmpl.without_input
    return text.format(instruction=row["instruction"], input=row.get("input") or "")


def to_prompt_completion(row: Mapping[str, str | None], template: str = "alpaca") -> dict[str, str]:
    """An Alpaca row as a TRL prompt-completion example (TRL adds EOS to the completion)."""
    return {"prompt": format_prompt(row, template), "completion": row["output"] or ""}
