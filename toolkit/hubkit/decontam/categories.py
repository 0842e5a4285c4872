"""Which kind of hit a training row is: duplicate, gray area, or similar but different.

The rule (applied to each pair at or above the embedding threshold):

1. **duplicate** when the training text is the benchmark question with at most light edits:
   over its word tokens (case-folded), either ``in-order overlap >= 0.8`` (the share of the
   question's words that appear in the same order in the training text: words changed,
   dropped, or text added around it) or ``Jaccard >= 0.8`` (the same words reordered), and
   every number of the question appears in the training text (a changed number makes a new
   question).
2. otherwise the answers decide: **similar but different** when the training output gives a
   different answer than the benchmark's gold answer; **gray area** when it gives the same one
   or when it cannot be told (no output, an answer letter without its choices, a reworded
   answer), so that keeping ``similar_different`` never keeps a hit whose answer was not
   shown to differ.

"Gives the same answer": for GSM8K, the output's final number (after ``####``, else its last
number) equals the gold number; for the others, one of the benchmark's gold answers (every
correct answer, for TruthfulQA) appears in the output as a run of whole words. "Gives a
different answer" needs evidence too: the GSM8K final number differs, or, for the others, no
gold answer appears but one of the item's wrong answers does (another choice of ARC, HellaSwag
or MMLU; an incorrect answer of TruthfulQA).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

Category = Literal["duplicate", "gray_area", "similar_different"]
Verdict = Literal["same", "different", "unknown"]
# Tuned on the GPT-4 rephrasings of MMLU abstract algebra and GSM8K test items 0-659 (95% of
# rephrasings score below 0.82 and 0.67; random 1-3 word edits score 0.85 and up); held out:
# the sociology and US history rephrasings and GSM8K 660+ (tests/test_decontam.py).
DUPLICATE_OVERLAP = 0.8
SEVERITY: dict[str, int] = {"duplicate": 2, "gray_area": 1, "similar_different": 0}

_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")
# A minus sign only where no word or ")" precedes it: "x-2" and "18-25" are not negative numbers.
_NUMBER = re.compile(r"(?:(?<![\w)])-)?\d+(?:,\d{3})*(?:\.\d+)?")
_LABEL = re.compile(r"^\s*(?:question|q)\s*[:.]\s*", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Case-folded word tokens, a leading ``Question:`` label dropped, numbers without commas."""
    text = _LABEL.sub("", unicodedata.normalize("NFKC", text).casefold())
    return [w.replace(",", "") for w in _WORD.findall(text)]


def _plain(text: str) -> str:
    """NFKC text with the Unicode minus and dashes as "-", so a copy that only retypes them matches."""
    return re.sub("[\u2010-\u2015\u2212]", "-", unicodedata.normalize("NFKC", text))


def numbers(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in _NUMBER.findall(_plain(text))}


@dataclass(frozen=True)
class Overlap:
    """Word-level likeness of a training text to a benchmark question."""

    in_order: float  # share of the question's words found in order in the training text
    jaccard: float  # shared distinct words over all distinct words
    numbers_kept: bool  # every number of the question is in the training text

    @property
    def score(self) -> float:
        return max(self.in_order, self.jaccard)


def overlap(training: str, question: str) -> Overlap:
    a, b = words(training), words(question)
    if not b:
        return Overlap(0.0, 0.0, True)
    matched = sum(block.size for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    union = set(a) | set(b)
    return Overlap(
        matched / len(b), len(set(a) & set(b)) / len(union), numbers(question) <= numbers(training)
    )


def final_number(text: str) -> float | None:
    """The answer of a worked solution: the number after ``####``, else the last number."""
    text = _plain(text)
    tail = text.rsplit("####", 1)[-1] if "####" in text else text
    found = _NUMBER.findall(tail)
    return float(found[-1].replace(",", "")) if found else None


def answer_verdict(
    output: str, answers: tuple[str, ...], numeric: bool, wrong: tuple[str, ...] = ()
) -> Verdict:
    """Does the training output give the benchmark's answer (``answers``), or one of its ``wrong`` ones?"""
    if not output.strip() or not answers:
        return "unknown"
    if numeric:
        got, gold = final_number(output), final_number(answers[0])
        if got is None or gold is None:
            return "unknown"
        return "same" if got == gold else "different"
    said = f" {' '.join(words(output))} "

    def says(texts: tuple[str, ...]) -> bool:
        return any(f" {gold} " in said for gold in (" ".join(words(t)) for t in texts) if gold)

    if says(answers):
        return "same"
    # a gold answer with no words ("∅") cannot be looked for, so nothing shows the output differs
    if all(words(a) for a in answers) and says(wrong):
        return "different"
    return "unknown"


def categorize(
    training: str,
    output: str,
    question: str,
    answers: tuple[str, ...],
    numeric: bool,
    wrong: tuple[str, ...] = (),
) -> tuple[Category, Overlap, Verdict]:
    """The category of one hit, with the evidence it rests on (see the module docstring)."""
    likeness = overlap(training, question)
    verdict = answer_verdict(output, answers, numeric, wrong)
    if likeness.score >= DUPLICATE_OVERLAP and likeness.numbers_kept:
        return "duplicate", likeness, verdict
    return ("similar_different" if verdict == "different" else "gray_area"), likeness, verdict
