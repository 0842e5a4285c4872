"""Decontamination on real benchmark items: planted copies, light edits, GPT-4 rephrasings and
similar-but-different variants are each found and categorised; clean rows are not flagged.

Benchmarks are small excerpts of the real test sets in ../shared/data (read there), so the
embedding model runs for real on a few hundred texts.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from leak_sets import rephrased

from hubkit.artifacts import read_json, sha256_file
from hubkit.data import write_rows
from hubkit.decontam import Embedder, check_dataset, load_benchmark
from hubkit.decontam.categories import DUPLICATE_OVERLAP, answer_verdict, categorize, overlap
from hubkit.decontam.check import method_embedder
from hubkit.decontam.search import similar_pairs
from hubkit.errors import HubkitError
from hubkit.provenance import require_passing_certificate

SUBJECTS = ("sociology", "abstract_algebra")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def bench_files(shared_data: Path, tmp_path_factory) -> dict[str, str]:
    """Excerpts of the real benchmark files, in their own formats."""
    src, out = shared_data / "benchmarks", tmp_path_factory.mktemp("benchmarks")
    lines = (src / "arc" / "arc_challenge_test.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "arc.jsonl").write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")
    lines = (src / "hellaswag" / "hellaswag_val.txt").read_text(encoding="utf-8").splitlines()
    (out / "hellaswag.txt").write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    lines = (src / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "gsm8k.jsonl").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    (out / "mmlu").mkdir()
    for subject in SUBJECTS:
        rows = _csv(src / "mmlu" / "test" / f"{subject}_test.csv")[:40]
        with (out / "mmlu" / f"{subject}_test.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    rows = _csv(src / "truthfulqa" / "TruthfulQA.csv")[:50]
    with (out / "truthfulqa.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    names = {"arc": "arc.jsonl", "hellaswag": "hellaswag.txt", "mmlu": "mmlu", "truthfulqa": "truthfulqa.csv"}
    return {**{k: str(out / v) for k, v in names.items()}, "gsm8k": str(out / "gsm8k.jsonl")}


def _row(instruction: str, output: str, input: str = "", source: str = "planted") -> dict[str, str]:
    return {"instruction": instruction, "input": input, "output": output, "data_source": source}


@pytest.fixture(scope="module")
def planted(shared_data: Path, bench_files: dict[str, str]) -> tuple[list[dict[str, str]], list[str | None]]:
    """Training rows built from real benchmark items, with the category each must get (None: clean)."""
    b = shared_data / "benchmarks"
    gsm = _jsonl(b / "gsm8k" / "test.jsonl")
    gold = [g["answer"].rsplit("####", 1)[1].strip() for g in gsm]
    gsm_reph = rephrased(shared_data, "rephrase_gsm8k.jsonl")
    soc = _csv(b / "mmlu" / "test" / "sociology_test.csv")
    soc_gold = [r[f"choice{r['answer']}"] for r in soc]
    soc_reph = rephrased(shared_data, "sociology_test_rephrase_english_filtered_question.jsonl")
    alg = _csv(b / "mmlu" / "test" / "abstract_algebra_test.csv")
    alg_reph = rephrased(shared_data, "abstract_algebra_test_rephrase_english_filtered_question.jsonl")
    arc = load_benchmark("arc", bench_files["arc"]).items
    tqa = load_benchmark("truthfulqa", bench_files["truthfulqa"]).items
    swag = load_benchmark("hellaswag", bench_files["hellaswag"]).items
    words = gsm[10]["question"].split()
    words[3], words[4] = words[4], words[3]
    changed = re.sub(r"\d+", lambda m: str(int(m.group()) + 3), gsm[5]["question"], count=1)
    choices = "\n".join(f"{k}. {soc[8][f'choice{i}']}" for i, k in enumerate("ABCD"))
    rows = [
        # duplicates: verbatim, light edits, the question with its choices added, copied twice
        (_row(arc[0].question, arc[0].answers[0]), "duplicate"),
        (_row(soc[8]["question"], soc_gold[8], input=choices), "duplicate"),
        (_row(tqa[0].question.replace("happens to", "will happen to"), tqa[0].answers[0]), "duplicate"),
        (_row(" ".join(words), gsm[10]["answer"]), "duplicate"),
        (_row(swag[0].question, swag[0].answers[0]), "duplicate"),
        (_row(gsm[11]["question"], gsm[11]["answer"]), "duplicate"),
        (_row("Q: " + gsm[11]["question"], "#### " + gold[11]), "duplicate"),
        # gray area: GPT-4 rephrasings, answered with the gold answer
        (_row(gsm_reph[0], f"She makes $18.\n#### {gold[0]}"), "gray_area"),
        (_row(gsm_reph[1], f"#### {gold[1]}"), "gray_area"),
        (_row(gsm_reph[2], f"The profit is {gold[2]} dollars."), "gray_area"),
        (_row(soc_reph[2], soc_gold[2]), "gray_area"),
        (_row(soc_reph[3], f"The answer is: {soc_gold[3]}"), "gray_area"),
        (_row(alg_reph[5], alg[5][f"choice{alg[5]['answer']}"]), "gray_area"),
        # similar but different: a changed number, or a rephrasing answered differently
        (_row(gsm_reph[3], f"#### {int(gold[3]) + 7}"), "similar_different"),
        (_row(gsm_reph[4], f"#### {int(gold[4]) * 2}"), "similar_different"),
        (_row(changed, "#### 1000001"), "similar_different"),
        (_row(soc_reph[6], soc[6][f"choice{(int(soc[6]['answer']) + 1) % 4}"]), "similar_different"),
    ]
    clean = [
        _row(r["question"], r["answer"], source="gsm8k-train")
        for r in _jsonl(b.parent / "train" / "gsm8k_train.jsonl")[100:130]
    ]
    return [r for r, _ in rows] + clean, [c for _, c in rows] + [None] * len(clean)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


def _dataset(folder: Path, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(rows, folder / "data.parquet")
    return folder


@pytest.fixture(scope="module")
def checked(planted, bench_files, cache, tmp_path_factory):
    rows, _ = planted
    folder = _dataset(tmp_path_factory.mktemp("planted") / "dataset", rows)
    out = folder.parent / "clean"
    return (
        folder,
        out,
        check_dataset(folder, out, benchmark_files=bench_files, cache_dir=cache, progress=False),
    )


def test_planted_items_found_and_categorised(planted, checked):
    rows, expected = planted
    _, _, result = checked
    found: dict[int, set[str]] = {}
    for hit in result.hits:
        found.setdefault(hit["row"], set()).add(hit["category"])
    for i, category in enumerate(expected):
        if category is None:
            assert i not in found, f"clean row {i} flagged: {rows[i]['instruction'][:80]}"
        else:
            assert category in found.get(i, set()), f"row {i} ({category}) got {found.get(i)}: {rows[i]}"


def test_every_hit_counts_not_only_the_nearest(planted, checked):
    """Platypus removed one training row per test item; both copies of GSM8K item 11 must go."""
    _, _, result = checked
    rows_for_item = {h["row"] for h in result.hits if h["benchmark"] == "gsm8k" and h["item"] == 11}
    assert rows_for_item == {5, 6}


def test_clean_artifact_report_and_certificate(planted, checked, bench_files):
    rows, expected = planted
    folder, out, result = checked
    flagged = sum(c is not None for c in expected)
    assert result.removed == flagged and result.passed
    clean = pq.read_table(out / "data.parquet").to_pylist()
    assert clean == rows[flagged:]
    certificate = require_passing_certificate(out)
    assert certificate["dataset_sha256"] == sha256_file(out / "data.parquet")
    assert certificate["input_dataset_sha256"] == sha256_file(folder / "data.parquet")
    assert set(certificate["benchmarks"]) == {"arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k"}
    assert certificate["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert certificate["embedding_model_revision"].startswith("sha256:")
    assert certificate["threshold"] == 0.65 and certificate["rows_removed"] == flagged
    assert certificate["rule"]["method"] == "multiview"
    assert certificate["rule"]["benchmarks"]["gsm8k"] == {"candidate": 0.78, "sure": 0.85, "numbers": 0.75}
    assert certificate["rule"]["benchmarks"]["mmlu"] == {"candidate": 0.65, "sure": 0.8, "numbers": 0.75}
    report = read_json(out / "leak_report.json")
    assert report["rule"] == certificate["rule"]
    for hit in report["hits"]:  # each hit carries the evidence its decision rests on
        assert hit["evidence"]["decided_by"] in ("cosine", "numbers")
        assert hit["evidence"]["view"] == hit["view"]
    assert report["summary"]["gsm8k"]["duplicate"] == 3
    assert report["summary"]["mmlu"] == {"duplicate": 1, "gray_area": 3, "similar_different": 1}
    hit = next(h for h in report["hits"] if h["row"] == 0)
    assert hit["benchmark_question"] == rows[0]["instruction"] and hit["score"] >= 0.99
    markdown = (out / "leak_report.md").read_text()
    assert "| arc | 1 | 0 | 0 |" in markdown and rows[7]["instruction"][:40] in markdown
    assert read_json(out / "manifest.json")["kind"] == "dataset"


def test_platypus_keeps_the_single_cut(planted, checked, bench_files, cache):
    """``method="platypus"``: the question alone at cosine >= 0.8, recorded as such; the
    multiview method finds every pair it finds."""
    folder, out, multiview = checked
    result = check_dataset(
        folder, out.parent / "platypus", method="platypus", benchmark_files=bench_files, cache_dir=cache
    )
    assert result.hits and all(h["view"] == "item" and h["score"] >= 0.8 for h in result.hits)
    certificate = read_json(out.parent / "platypus" / "leak_certificate.json")
    assert certificate["threshold"] == 0.8 and certificate["rule"]["method"] == "platypus"
    assert {(h["row"], h["item"]) for h in result.hits} <= {(h["row"], h["item"]) for h in multiview.hits}
    with pytest.raises(HubkitError, match="platypus"):
        check_dataset(folder, threshold=0.7, benchmark_files=bench_files, cache_dir=cache)


def test_keep_similar_different_is_recorded(planted, checked, bench_files, cache):
    rows, expected = planted
    folder, out, _ = checked
    result = check_dataset(
        folder, out.parent / "keep", keep=["similar_different"], benchmark_files=bench_files, cache_dir=cache
    )
    kept = sum(c == "similar_different" for c in expected)
    assert result.kept_flagged == kept and result.passed
    certificate = read_json(out.parent / "keep" / "leak_certificate.json")
    assert certificate["kept_categories"] == ["similar_different"]
    assert certificate["rows_kept_flagged"] == kept
    leaky = check_dataset(
        folder, out.parent / "dup", keep=["duplicate"], benchmark_files=bench_files, cache_dir=cache
    )
    assert not leaky.passed and not read_json(out.parent / "dup" / "leak_certificate.json")["passed"]


def test_cache_embeds_only_new_texts(cache):
    texts = ["What is the boiling point of water at sea level?", "Name the largest planet."]
    first = Embedder(cache_dir=cache, progress=False)
    vectors = first.embed(texts)
    again = Embedder(cache_dir=cache, progress=False)
    assert np.array_equal(again.embed(texts), vectors) and again.embedded == 0
    again.embed([*texts, "A brand new question about tides?"])
    assert again.embedded == 1
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_multiview_reads_128_word_pieces_in_a_cache_of_its_own(cache):
    """The multiview method truncates at views.MAX_TOKENS: short texts embed as with the model's
    own 256, long ones differently, so the two never share cached vectors."""
    short = "What is the boiling point of water at sea level?"
    long = " ".join(f"clue{i} about the passage" for i in range(80))  # > 256 word pieces
    full = method_embedder("platypus", cache_dir=cache, progress=False)
    cut = method_embedder("multiview", cache_dir=cache, progress=False)
    assert cut.cache.folder != full.cache.folder
    a, b = full.embed([short, long]), cut.embed([short, long])
    assert float(a[0] @ b[0]) > 0.9999 and float(a[1] @ b[1]) < 0.999
    head = cut._load_model().tokenizer.decode(cut._load_model().tokenizer(long)["input_ids"][1:127])
    assert float(b[1] @ full.embed([head])[0]) > 0.999  # the first 126 pieces + [CLS]/[SEP]


def test_token_sized_batches_give_sentence_transformers_embeddings(shared_data: Path, tmp_path, monkeypatch):
    """Batching by token length changes the padding, not the vectors, and covers every text once;
    texts that read as the same word pieces (equal once truncated) take one pass; on several
    cores the batches run side by side, one thread each."""
    items = load_benchmark("mmlu", shared_data / "benchmarks" / "mmlu" / "test").items
    texts = [item.question for item in items[::400]] + ["Hi?", "x " * 400, "x " * 400 + "y", " Hi? "]
    embedder = Embedder(cache_dir=tmp_path, progress=False, tokens_per_batch=512)
    groups, batches = embedder._batches(texts)
    assert sorted(i for group in groups for i in group) == list(range(len(texts)))
    assert sorted(len(g) for g in groups)[-2:] == [2, 2]  # the two long x texts, the two Hi?
    assert sorted(g for batch in batches for g in batch) == list(range(len(groups)))
    model = embedder._load_model()
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]]
    assert all(len(b) == 1 or len(b) * max(lengths[groups[g][0]] for g in b) <= 512 for b in batches)
    assert len(batches) > 2 and any(len(b) > 8 for b in batches)  # short questions share a pass
    want = model.encode(texts, batch_size=32, normalize_embeddings=True)
    ran_on = []
    encode = embedder._encode
    monkeypatch.setattr(
        embedder,
        "_encode",
        lambda t: ran_on.append((threading.current_thread().name, torch.get_num_threads())) or encode(t),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two workers, whatever this machine has
    try:
        assert np.abs(embedder.embed(texts) - want).max() < 1e-5
        assert torch.get_num_threads() == 2
        assert embedder.embedded == len(groups) == len(texts) - 2
    finally:
        torch.set_num_threads(threads)
    assert len(ran_on) == len(batches)
    assert ran_on[0] == (threading.main_thread().name, 2)  # sets the tokenizer's padding alone
    assert {r[0].startswith("hubkit-embed") and r[1] == 1 for r in ran_on[1:]} == {True}


def test_similar_pairs_matches_brute_force_in_small_blocks():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(57, 8)).astype(np.float32)
    b = np.concatenate([a[:20] + 0.05 * rng.normal(size=(20, 8)), rng.normal(size=(31, 8))]).astype(
        np.float32
    )
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    full = a @ b.T
    expect = [(i, j) for i in range(57) for j in range(51) if full[i, j] >= 0.7]
    got = [(i, j) for i, j, _ in similar_pairs(a, b, 0.7, block_elements=100)]
    assert got == expect and len(expect) >= 20
    b[3] = np.nan  # a broken vector hides no other pair
    got = [(i, j) for i, j, _ in similar_pairs(a, b, 0.7, block_elements=100)]
    assert got == [(i, j) for i, j in expect if j != 3]
    self_full = a @ a.T
    expect = [(i, j) for i in range(57) for j in range(i) if self_full[i, j] >= 0.3]
    assert [(i, j) for i, j, _ in similar_pairs(a, a, 0.3, below_diagonal=True, block_elements=64)] == expect


def test_category_rule_on_held_out_rephrasings(shared_data: Path):
    """The duplicate cut-off was tuned on abstract algebra and GSM8K items 0-659; on the held-out
    sociology and GSM8K 660+ rephrasings few count as duplicates, and light edits all do."""
    rng = random.Random(0)
    soc = _csv(shared_data / "benchmarks" / "mmlu" / "test" / "sociology_test.csv")
    reph = rephrased(shared_data, "sociology_test_rephrase_english_filtered_question.jsonl")
    pairs = [(r["question"], t) for r, t in zip(soc, reph, strict=True) if t]
    gsm = _jsonl(shared_data / "benchmarks" / "gsm8k" / "test.jsonl")[660:]
    gsm_reph = rephrased(shared_data, "rephrase_gsm8k.jsonl")[660:]
    pairs += [(g["question"], t) for g, t in zip(gsm, gsm_reph, strict=True)]
    as_duplicate = sum(overlap(t, q).score >= DUPLICATE_OVERLAP for q, t in pairs)
    assert as_duplicate / len(pairs) < 0.02
    edited = 0
    for q, _ in pairs:
        words = q.split()
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        edited += categorize(" ".join(words), "", q, (), False)[0] == "duplicate"
    assert edited == len(pairs)


@pytest.mark.parametrize(
    ("output", "answers", "numeric", "verdict"),
    [
        ("Step 1... so 3 + 4 = 7\n#### 7", ("7",), True, "same"),
        ("#### 1,200", ("1200",), True, "same"),
        ("The answer is 8.", ("7",), True, "different"),
        ("paralysis of the facial muscles.", ("paralysis of the facial muscles.",), False, "same"),
        ("B", ("a protruding mandible",), False, "unknown"),
        ("", ("x",), False, "unknown"),
        (
            "Nothing in particular happens",
            ("Nothing happens", "Nothing in particular happens"),
            False,
            "same",
        ),
        ("You grow watermelons", ("Nothing happens",), False, "unknown"),  # no wrong answer to show
    ],
)
def test_answer_verdict(output, answers, numeric, verdict):
    assert answer_verdict(output, answers, numeric) == verdict


WATERMELON = ("Nothing happens", "You digest the seeds")
SEEDS_WRONG = ("You grow watermelons in your stomach", "You die")


@pytest.mark.parametrize(
    ("output", "answers", "wrong", "verdict"),
    [
        ("You grow watermelons in your stomach.", WATERMELON, SEEDS_WRONG, "different"),
        ("Nothing happens.", WATERMELON, SEEDS_WRONG, "same"),
        # a reworded gold answer shows nothing: gray area, never "similar but different"
        ("Nothing bad; the seeds pass through your digestive system", WATERMELON, SEEDS_WRONG, "unknown"),
        ("The answer is B.", ("Paris",), ("London", "Rome"), "unknown"),
        ("Option (C) is correct.", ("Paris",), ("London", "Rome"), "unknown"),
        ("Rome", ("Paris",), ("London", "Rome"), "different"),
        ("{1, 2}", ("∅",), ("{1, 2}",), "unknown"),  # a gold answer without words cannot be looked for
    ],
)
def test_a_different_answer_needs_a_wrong_answer_in_the_output(output, answers, wrong, verdict):
    assert answer_verdict(output, answers, False, wrong) == verdict


def test_hyphens_and_unicode_minus_are_not_signs():
    from hubkit.decontam.categories import final_number, numbers

    assert overlap("If f(x) = x - 2, what is f(5)?", "If f(x) = x-2, what is f(5)?").numbers_kept
    assert numbers("ages 18-25") == numbers("ages 18 \u2013 25") == {18.0, 25.0}
    assert numbers("it fell to \u22125 degrees, then (-3)") == {-5.0, -3.0}
    assert final_number("so the change is\n#### -5") == -5.0


def test_threshold_one_finds_every_copy():
    """float32 puts a vector's score with itself just under 1.0 about a quarter of the time."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert ((vectors * vectors).sum(axis=1) < 1).any()
    pairs = {(i, j) for i, j, _ in similar_pairs(vectors, vectors, 1.0)}
    assert pairs == {(i, i) for i in range(1000)}


def test_benchmark_loaders_read_the_shared_files(shared_data: Path):
    b = shared_data / "benchmarks"
    sizes = {
        ("arc", "arc/arc_challenge_test.jsonl"): 1172,
        ("hellaswag", "hellaswag/hellaswag_val.txt"): 10042,
        ("mmlu", "mmlu/test"): 14042,
        ("truthfulqa", "truthfulqa/TruthfulQA.csv"): 817,
        ("truthfulqa", "truthfulqa/mc_task.json"): 817,
        ("gsm8k", "gsm8k/test.jsonl"): 1319,
    }
    for (name, path), n in sizes.items():
        bench = load_benchmark(name, b / path)
        assert len(bench.items) == n and all(item.question and item.answers for item in bench.items)
        assert name == "gsm8k" or all(item.wrong for item in bench.items), (name, path)
    assert load_benchmark("gsm8k", b / "gsm8k/test.jsonl").items[0].answers == ("18",)


def test_hub_schema_rows():
    """The same loaders read rows in the Hub datasets' schemas."""
    from hubkit.decontam.benchmarks import LOADERS

    arc = {"question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    assert LOADERS["arc"].row(arc).answers == ("y",) and LOADERS["arc"].row(arc).wrong == ("x",)
    swag = {
        "activity_label": "Roof",
        "ctx_a": "A man [title] sits.",
        "ctx_b": "he",
        "endings": ["a", "b"],
        "label": "1",
    }
    assert LOADERS["hellaswag"].row(swag).question == "Roof: A man. sits. He"
    assert LOADERS["hellaswag"].row(swag).wrong == ("a",)
    mmlu = LOADERS["mmlu"].row({"question": "Q", "choices": ["a", "b", "c"], "answer": 1})
    assert (mmlu.answers, mmlu.wrong) == (("b",), ("a", "c"))
    tqa = {"question": "Q", "best_answer": "b", "correct_answers": ["b", "c"], "incorrect_answers": ["d"]}
    truthful = LOADERS["truthfulqa"].row(tqa)
    assert (truthful.answers, truthful.wrong) == (("b", "c"), ("d",))


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``hubkit ARGS`` through the console entry point, in this process."""
    from hubkit.cli import main

    argv, sys.argv = sys.argv, ["hubkit", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return int(code), out, err


def test_cli_check_without_out_fails_on_hits(checked, bench_files, cache, capsys, monkeypatch):
    folder, _, _ = checked
    monkeypatch.setenv("HUBKIT_CACHE", str(cache.parent / "cli-cache"))
    files = [a for name, path in bench_files.items() for a in ("--benchmark-file", f"{name}={path}")]
    code, out, err = run_cli(
        ["data", "check", str(folder), "--benchmarks", "gsm8k,arc", *files[-2:], *files[:2]], capsys
    )
    assert code == 1 and "gsm8k: 3 duplicate" in out
    last = err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("Error: ") and "10 rows match benchmark questions" in last and "--out" in last


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("ok", ["--benchmarks", "arc,winogrande"], "unknown benchmark 'winogrande'; known: arc, hellaswag"),
        ("no_output_column", [], "missing column 'output'"),
        ("empty", [], "data.parquet: no rows"),
        ("garbage", [], "unreadable parquet"),
        (
            "ok",
            ["--benchmark-file", "arc=/nonexistent/arc.jsonl", "--benchmarks", "arc"],
            "/nonexistent/arc.jsonl",
        ),
    ],
)
def test_cli_check_bad_input(make, args, message, tmp_path, capsys):
    import pyarrow as pa

    folder = tmp_path / "dataset"
    folder.mkdir()
    if make == "garbage":
        (folder / "data.parquet").write_bytes(b"PAR1 not really")
    elif make == "no_output_column":
        pq.write_table(pa.table({"instruction": ["q"], "input": [""]}), folder / "data.parquet")
    else:
        write_rows([] if make == "empty" else [_row("q", "a")], folder / "data.parquet")
    out = tmp_path / "clean"
    code, _, err = run_cli(["data", "check", str(folder), "--out", str(out), *args], capsys)
    assert code == 1 and err.startswith("Error: ") and message in err and err.strip().count("\n") == 0
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_check_recipe_on_some_benchmarks(checked, bench_files, cache, tmp_path):
    """`hubkit data check tiny.yaml --benchmarks gsm8k`: the recipe's other files are not an error;
    files given on the command line add to the recipe's; one given for an unchecked benchmark is."""
    from hubkit.decontam import check_recipe
    from hubkit.errors import HubkitError
    from hubkit.recipe import recipe_from_dict

    folder, _, _ = checked
    options = {"cache_dir": cache, "progress": False}

    def recipe(files: dict[str, str]):
        raw = {"name": "r", "model": {"name_or_path": "x"}, "decontam": {"benchmark_files": files}}
        return recipe_from_dict(raw, "r.yaml", tmp_path)

    only = check_recipe(recipe(bench_files), folder, tmp_path / "gsm8k", benchmarks=["gsm8k"], **options)
    assert list(only.summary) == ["gsm8k"] and list(only.certificate["benchmarks"]) == ["gsm8k"]
    both = check_recipe(
        recipe({"gsm8k": bench_files["gsm8k"]}),
        folder,
        tmp_path / "both",
        benchmarks=["gsm8k", "arc"],
        benchmark_files={"arc": bench_files["arc"]},
        **options,
    )
    assert list(both.summary) == ["gsm8k", "arc"]
    with pytest.raises(HubkitError, match="benchmark file given for arc, which is not among"):
        check_recipe(
            recipe(bench_files), folder, tmp_path / "x", benchmarks=["gsm8k"], benchmark_files={"arc": "a"}
        )


@pytest.mark.parametrize(
    "damage", ["no_vectors", "garbage", "truncated", "fewer_rows", "other_dim", "no_keys"]
)
def test_broken_cache_shard_is_skipped_with_a_warning(damage, tmp_path, caplog):
    """A shard that cannot be read or does not fit its keys is embedded again, not a crash."""
    import logging

    from hubkit.decontam.embed import EmbeddingCache, text_key

    shards = [[text_key("a"), text_key("b")], [text_key("c"), text_key("d"), text_key("e")]]
    writer = EmbeddingCache(tmp_path)
    for keys in shards:
        writer.put(keys, np.eye(len(keys), 4, dtype=np.float32))
    keys_file = sorted(tmp_path.glob("*.keys.npy"))[-1]  # the shard loaded last: the other one sets the dim
    vecs_file = keys_file.with_name(keys_file.name.replace(".keys.", ".vecs."))
    broken = [k.tobytes() for k in np.load(keys_file)]
    kept = next(keys for keys in shards if keys != broken)
    if damage == "no_vectors":
        vecs_file.unlink()
    elif damage == "garbage":
        vecs_file.write_bytes(b"not an npy file")
    elif damage == "truncated":
        vecs_file.write_bytes(vecs_file.read_bytes()[:-8])
    elif damage == "no_keys":
        keys_file.write_bytes(b"")
    else:
        shape = (len(broken) - 1, 4) if damage == "fewer_rows" else (len(broken), 5)
        np.save(vecs_file, np.ones(shape, dtype=np.float32))
    cache = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hubkit.decontam.embed"):
        assert cache.missing(shards[0] + shards[1]) == broken
    [record] = caplog.records
    message, at_fault = record.getMessage(), keys_file if damage == "no_keys" else vecs_file
    assert message.startswith(f"{at_fault}: skipping a broken embedding cache shard (")
    assert "\n" not in message and "embedded again" in message
    assert np.array_equal(cache.get(kept, 4), np.eye(len(kept), 4, dtype=np.float32))
    cache.put(broken, np.eye(len(broken), 4, dtype=np.float32))  # same texts, same shard name: repaired
    caplog.clear()
    assert EmbeddingCache(tmp_path).missing(shards[0] + shards[1]) == [] and not caplog.records
