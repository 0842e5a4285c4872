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
   or when it cannot be told (no output, or an answer letter without its choices), so that
   keeping ``similar_different`` never keeps a hit whose answer was not compared.

"Gives the same answer": for GSM8K, the output's final number (after ``####``, else its last
number) equals the gold number; for the others, one of the benchmark's gold answers (every
correct answer, for TruthfulQA) appears in the output as a run of whole words.
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
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_LABEL = re.compile(r"^\s*(?:question|q)\s*[:.]\s*", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Case-folded word tokens, a leading ``Question:`` label dropped, numbers without commas."""
    text = _LABEL.sub("", unicodedata.normalize("NFKC", text).casefold())
    return [w.replace(",", "") for w in _WORD.findall(text)]


def numbers(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in _NUMBER.findall(text)}


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
    tail = text.rsplit("####", 1)[-1] if "####" in text else text
    found = _NUMBER.findall(tail)
    return float(found[-1].replace(",", "")) if found else None


def answer_verdict(output: str, answers: tuple[str, ...], numeric: bool) -> Verdict:
    """Does the training output give the benchmark's answer?"""
    if not output.strip() or not answers:
        return "unknown"
    if numeric:
        got, gold = final_number(output), final_number(answers[0])
        if got is None or gold is None:
            return "unknown"
        return "same" if got == gold else "different"
    said = words(output)
    if len(said) == 1 and len(said[0]) == 1 and said[0] in "abcde":
        return "unknown"  # a choice letter: its choices are not in the benchmark item
    text = f" {' '.join(said)} "
    for answer in answers:
        gold = " ".join(words(answer))
        if gold and f" {gold} " in text:
            return "same"
    return "different"


def categorize(
    training: str, output: str, question: str, answers: tuple[str, ...], numeric: bool
) -> tuple[Category, Overlap, Verdict]:
    """The category of one hit, with the evidence it rests on (see the module docstring)."""
    likeness = overlap(training, question)
    verdict = answer_verdict(output, answers, numeric)
    if likeness.score >= DUPLICATE_OVERLAP and likeness.numbers_kept:
        return "duplicate", likeness, verdict
    return ("similar_different" if verdict == "different" else "gray_area"), likeness, verdict
