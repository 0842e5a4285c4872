"""Recall, false positives and F1 of the shipped leak check on labelled rephrasings (the issue's
table; sets in tests/leak_sets.py). Parameters were chosen on the development sets (abstract
algebra, sociology, GSM8K 0-659); the held-out sets (US history, GSM8K 660+ against GSM8K-train
questions 0-2,999) were not looked at to choose them.

Cost (marked slow): ~8,600 texts embedded once per module (~4 min on 2 shared cores, empty cache); the
GSM8K development negatives are cut to 1,000 (train questions 3,000-3,999) to keep it there.
tests/benchmarks/bench_leak_f1.py prints the whole table, with 3,000, next to Platypus' cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from leak_sets import leak_sets, score

# The module-scoped fixture's embedding counts against the first test's time limit: ~4 min on
# 2 idle cores, 10+ min on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# (minimum F1, most false positives); None: no bound beyond F1
TARGETS = {
    "gsm8k 0-659": (0.97, None),
    "gsm8k 660+": (0.97, 41),  # Platypus' cut flags 41 of these 3,000 GSM8K-train questions
    "gsm8k (all)": (0.97, 41),
    "abstract_algebra": (0.97, None),
    "sociology": (0.97, None),
    "high_school_us_history": (0.8, None),
}


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> dict[str, tuple[str, object]]:
    cache = tmp_path_factory.mktemp("f1-cache")
    return {s.name: (s.role, score(s, cache)) for s in leak_sets(shared_data, 3000, 1000)}


@pytest.mark.parametrize("name", list(TARGETS))
def test_shipped_defaults_reach_the_targets(scores, name: str) -> None:
    role, result = scores[name]
    f1_min, fp_max = TARGETS[name]
    fp = f"{result.false_positives}/{result.negatives}"
    figures = f"{role}: recall {result.recall:.3f}, false positives {fp}, F1 {result.f1:.3f}"
    assert result.f1 >= f1_min, figures
    if fp_max is not None:
        assert result.false_positives <= fp_max, figures
