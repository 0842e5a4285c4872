"""The views of a benchmark item a training row may copy, each embedded on its own.

A rewording rarely keeps an item's whole text: US-history rephrasings keep the question and
drop the source passage it refers to (cosine ~0.4 against passage + question), MMLU and ARC
questions come back with their choices inline. So each
item is indexed as:

| view | text | items |
|---|---|---|
| ``item`` | the question as the benchmark prompts it (today's Platypus text) | all |
| ``question`` | the final question line alone, when a passage precedes it | items with a passage |
| ``passage`` | the passage alone, as overlapping windows of ``WINDOW_WORDS`` words | items with a passage |
| ``choices`` | the question followed by its lettered choices | ARC, MMLU |

An item "has a passage" when its text has at least two non-empty lines and the lines before
the last hold at least ``PASSAGE_WORDS`` words (MMLU's "This question refers to the following
information. ..." items; a two-line statement question is not split). A row's similarity to an
item is its best view's; views with the same text are embedded once (the embedding cache is
keyed by text), and so are texts that read as the same word pieces once cut at ``MAX_TOKENS``,
to which every view and every training row is read (a long MMLU question is its choices view).

No HellaSwag ``ending`` view (context + gold ending): it is the item view plus ~30 tokens, and
the two score cosine >= 0.83 against each other for 99% of items (median 0.97; 150 sampled
items), so a copy of either reaches the other's ``sure`` cut (0.8); it cost 0.82 M of the
3.64 M tokens the views took. The ``choices`` view does earn its cost on the development sets
(without it: sociology 182/197, abstract algebra 94/96 rephrasings found, against 188 and 96).
"""

from __future__ import annotations

from typing import Literal

from ..benchmarks import BENCHMARKS, Item

View = Literal["item", "question", "passage", "choices"]
VIEWS: tuple[View, ...] = ("item", "question", "passage", "choices")
PASSAGE_WORDS = 25
# all-MiniLM-L6-v2 was trained on 128 word pieces (it reads 256): beyond that its embedding adds
# little, and the 4% of views that are longer took 9% of the views' tokens.
MAX_TOKENS = 128
# A window of 120 words is read up to MAX_TOKENS (~95 words): windows 60 words apart still overlap.
WINDOW_WORDS = 120
WINDOW_STRIDE = 60


def split_passage(text: str) -> tuple[str, str] | None:
    """(passage, question) when ``text`` is a passage followed by a final question line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or sum(len(line.split()) for line in lines[:-1]) < PASSAGE_WORDS:
        return None
    return "\n".join(lines[:-1]), lines[-1]


def windows(text: str) -> list[str]:
    """``text`` as overlapping windows of at most ``WINDOW_WORDS`` words (whole when it fits)."""
    words = text.split()
    if len(words) <= WINDOW_WORDS:
        return [text]
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [" ".join(words[s : s + WINDOW_WORDS]) for s in starts]


def item_views(item: Item, benchmark: str) -> list[tuple[View, str]]:
    """The ``(view, text)`` pairs ``item`` of ``benchmark`` is indexed under (distinct texts)."""
    views: list[tuple[View, str]] = [("item", item.question)]
    question = item.question
    split = split_passage(item.question)
    if split is not None:
        passage, question = split
        views.append(("question", question))
        views += [("passage", window) for window in windows(passage)]
    extra = BENCHMARKS[benchmark].views
    if "choices" in extra and item.choices:
        lettered = "\n".join(f"{chr(65 + i)}. {choice}" for i, choice in enumerate(item.choices))
        views.append(("choices", f"{question}\n{lettered}"))
    seen: set[str] = set()
    return [(view, text) for view, text in views if not (text in seen or seen.add(text))]
