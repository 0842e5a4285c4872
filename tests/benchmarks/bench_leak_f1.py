"""The issue's leak table, before (Platypus: the question at cosine >= 0.8, and at 0.6) and after
(the shipped multiview method), in one run, on the labelled sets of tests/leak_sets.py.

Development sets were used to choose the shipped parameters (decontam/rule.py); held-out sets
(US history, GSM8K 660+) were not. Embeddings are cached under $HUBKIT_CACHE (default
~/.cache/hubkit), so a second run costs only the matching.

    .venv/bin/python tests/benchmarks/bench_leak_f1.py [--json out.json]

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
sys.path[:0] = [str(ROOT / "toolkit"), str(ROOT / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from leak_sets import leak_sets, score

    start = time.perf_counter()
    figures = []
    print("| set | role | positives | negatives | method | recall | false positives | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for leak_set in leak_sets(SHARED):
        runs = {
            "platypus 0.8": score(leak_set, None, "platypus", 0.8),
            "platypus 0.6": score(leak_set, None, "platypus", 0.6),
            "multiview": score(leak_set, None, "multiview"),
        }
        for method, s in runs.items():
            print(
                f"| {leak_set.name} | {leak_set.role} | {s.positives} | {s.negatives} | {method} | "
                f"{s.recall:.3f} | {s.false_positives} / {s.negatives} | {s.f1:.3f} |",
                flush=True,
            )
            figures.append(
                {"set": leak_set.name, "role": leak_set.role, "method": method, "found": s.found,
                 "positives": s.positives, "false_positives": s.false_positives,
                 "negatives": s.negatives, "recall": s.recall, "f1": s.f1}
            )  # fmt: skip
    base = {f["set"]: f["f1"] for f in figures if f["method"] == "platypus 0.8"}
    print("\nF1 multiview / platypus 0.8:")
    for f in figures:
        if f["method"] == "multiview":
            before = base[f["set"]]
            print(f"  {f['set']}: {f['f1']:.3f} / {before:.3f} = {f['f1'] / max(before, 1e-9):.2f}x")
    print(f"\n{time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
