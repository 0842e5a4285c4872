"""Which (training row, benchmark item) pairs are leaks: two stages on a row's best view.

1. **Candidates** (recall first): a pair whose best view (see ``views``) scores at least the
   benchmark's ``candidate`` cosine.
2. **Decision** on evidence beyond the cosine:
   - ``cosine``: the best view scores at least ``sure``: a hit on the cosine alone;
   - else ``numbers``: at least ``numbers`` of the view's numbers (digits, or "three",
     "dozen", ...) appear in the training text; a view with no number passes. With
     ``numbers`` 0, every candidate is a hit.
   A candidate with neither is no hit. Whether the output gives the gold answer, the word
   overlap and the length ratio are recorded with each hit (the first two decide its category,
   see ``categories``), not used to decide: on the GSM8K development set, letting a stated gold
   answer decide added 2 false positives (GSM8K-train solutions that end on the same small
   number) and no rephrasing.

Parameters per benchmark, tuned on the development sets only (../shared/data/benchmarks/
rephrased: the GPT-4 rephrasings of MMLU abstract algebra and sociology against the other
subjects' questions, GSM8K test items 0-659 against GSM8K-train questions 3,000-5,999; the
held-out sets, US history and GSM8K 660+ against GSM8K-train questions 0-2,999, only report):

- GSM8K: the rephrasings keep the numbers, similar training questions do not. Chosen on each
  row's nearest item of the development set, where (candidate 0.78, sure 0.85, numbers 0.75)
  and its neighbours (0.75-0.78, 0.85-0.88, 0.75-0.8) score F1 0.977-0.979; over every pair
  (as shipped, tests/benchmarks/bench_leak_f1.py) it gives 0.976 (642/659 rephrasings,
  15/3,000 false positives), the single cut 0.8 gives 0.952 (43 false positives).
- multiple choice (MMLU; ARC, HellaSwag, TruthfulQA, for which no labelled rephrasings exist,
  take the same): on the two development subjects alone (negatives: the other subjects) any
  best-view cut from 0.55 to 0.65 scores F1 0.995-1.0, but in-domain rows are close too: at
  0.6, 1,194 of GSM8K-train questions 3,000-5,999 match an item of eight math, science and
  economics MMLU subjects (ARC-Challenge questions: 75 of 1,172). Over candidate 0.6-0.7,
  sure 0.75-0.85, numbers 0.75-1.0 and a word-overlap floor 0-0.3, (0.65, 0.8, 0.75) keeps
  abstract algebra at 96/96 and sociology at 188/197 (F1 0.977; 0.7 drops it to 0.966) and
  flags 18 of those 3,000 GSM8K-train questions (Platypus' cut: 1) and 23 ARC questions (2);
  a word-overlap floor of 0.15-0.3 cost rephrasings for few false positives removed.

``--platypus`` replaces all of this with the paper's single cut: the item view at cosine >= 0.8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from ..benchmarks import BENCHMARKS, Rule
from ..recipe import DecontamMethod, DecontamSection, default
from .categories import numbers, words

Method = DecontamMethod
METHODS: tuple[Method, ...] = get_args(Method)
PLATYPUS_THRESHOLD: float = default(DecontamSection, "threshold")


# The multiview rule of each leak-checked benchmark (``hubkit.benchmarks``' table).
RULES: dict[str, Rule] = {key: b.rule for key, b in BENCHMARKS.items() if b.rule is not None}

_SPELLED = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100, "thousand": 1000, "dozen": 12, "twice": 2, "double": 2,
    "triple": 3, "half": 0.5,
}  # fmt: skip


def stated_numbers(text: str) -> set[float]:
    """The numbers a text states, in digits or as common number words."""
    return numbers(text) | {float(_SPELLED[w]) for w in words(text) if w in _SPELLED}


@dataclass(frozen=True)
class Evidence:
    """What a hit's decision rests on, recorded with it (word overlap and answer: ``categorize``'s)."""

    cosine: float
    view: str
    numbers_found: float  # share of the item's numbers stated by the row (1.0: item has none)
    word_overlap: float  # ``categories.overlap`` of the row against the view's text
    answer: str  # same / different / unknown: does the output give the gold answer
    length_ratio: float  # row words / view words
    decided_by: str = ""  # cosine / numbers, or "" when no hit

    def record(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def decide(rule: Rule, cosine: float, row_numbers: set[float], view_text: str) -> tuple[str, float]:
    """The rule's decision on one candidate: (``cosine`` / ``numbers`` / "" for no hit, and the
    share of the view's numbers among ``row_numbers``, the training text's ``stated_numbers``)."""
    wanted = stated_numbers(view_text)
    found = len(wanted & row_numbers) / len(wanted) if wanted else 1.0
    if cosine >= rule.sure:
        return "cosine", found
    return ("numbers" if found >= rule.numbers else ""), found


def length_ratio(training: str, view_text: str) -> float:
    """Words of the training text per word of the view."""
    return len(words(training)) / max(1, len(words(view_text)))


def rule_record(names: list[str], method: Method, threshold: float) -> dict[str, Any]:
    """The decision rule as the report and certificate record it."""
    if method == "platypus":
        return {"method": method, "views": ["item"], "threshold": threshold}
    from .views import MAX_TOKENS, VIEWS

    return {
        "method": method,
        "views": list(VIEWS),
        "max_tokens": MAX_TOKENS,
        "benchmarks": {name: asdict(RULES[name]) for name in names},
        "decision": "a pair is a candidate at best-view cosine >= candidate; a candidate is a hit "
        "when cosine >= sure or the row states at least the share `numbers` of the view's numbers",
    }
