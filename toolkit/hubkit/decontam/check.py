"""``hubkit data check``: every training question against every benchmark question.

Each training row's text (instruction and input, as Platypus embedded them) and each
benchmark question are embedded; every pair with cosine >= the threshold is a hit, not only
the nearest one per benchmark item. Each hit gets a category (see ``categories``); a row
takes its most severe hit's category, and rows are removed unless their category is kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import __version__
from ..artifacts import (
    atomic_folder,
    digest_of,
    is_up_to_date,
    sha256_file,
    write_json,
    write_manifest,
)
from ..errors import HubkitError, format_validation_error
from ..recipe import CATEGORIES, DEFAULT_BENCHMARKS, DecontamSection, Recipe
from ..rows import question_text, write_rows
from ..schemas import DATA_FILE, MANIFEST, DatasetManifest, LeakCertificate, LeakReport
from .benchmarks import LOADERS, Benchmark, load_benchmarks
from .categories import SEVERITY, categorize
from .embed import DEFAULT_MODEL, Embedder
from .rule import (
    PLATYPUS_THRESHOLD,
    RULES,
    Evidence,
    Method,
    decide,
    length_ratio,
    rule_record,
    stated_numbers,
)
from .search import ROUNDING, similar_pairs
from .source import SourceOptions, read_source
from .views import MAX_TOKENS, item_views

REPORT_JSON = LeakReport.FILE
REPORT_MD = "leak_report.md"
# Categories that leak a benchmark answer: a dataset keeping any of them does not pass.
LEAKING = ("duplicate", "gray_area")
_SHOWN = 300  # characters of a training output quoted in the report


@dataclass
class CheckResult:
    """What ``check_dataset`` found and wrote."""

    rows_checked: int
    hits: list[dict[str, Any]]
    summary: dict[str, dict[str, int]]  # benchmark -> category -> flagged rows
    removed: int
    kept_flagged: int
    passed: bool  # no leaking hit remains in the output (with no output: no hit at all)
    out: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] | None = None


def method_embedder(
    method: Method,
    model: str = DEFAULT_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Embedder:
    """The embedder ``method`` reads with: ``multiview`` up to ``views.MAX_TOKENS`` word pieces,
    ``platypus`` as the notebook did (the model's own limit)."""
    max_tokens = MAX_TOKENS if method == "multiview" else None
    return Embedder(model, cache_dir=cache_dir, progress=progress, max_tokens=max_tokens)


def find_hits(
    rows: list[dict[str, str]],
    benchmarks: list[Benchmark],
    embedder: Embedder,
    method: Method = "multiview",
    threshold: float = PLATYPUS_THRESHOLD,
) -> list[dict[str, Any]]:
    """Every (row, benchmark item) pair the ``method`` calls a leak, categorised, in row order.

    A row is embedded as instruction + input (as Platypus did) and, when it has an input, also
    as the instruction alone: a question whose choices sit in the input still matches.
    ``platypus``: the item's question at cosine >= ``threshold``. ``multiview``: each item's
    views (``views``), a pair's best view, then the two stages of ``rule``.
    """
    texts = [question_text(row) for row in rows]
    owner = list(range(len(rows))) + [i for i, row in enumerate(rows) if row["input"]]
    queries = texts + [rows[i]["instruction"] for i in owner[len(rows) :]]
    columns: list[tuple[Benchmark, int, str, str]] = []  # (benchmark, item, view, text)
    for bench in benchmarks:
        for j, item in enumerate(bench.items):
            views = item_views(item, bench.name) if method == "multiview" else [("item", item.question)]
            columns.extend((bench, j, view, text) for view, text in views)
    # one call, so the check shows one bar
    embedded = embedder.embed(queries + [c[3] for c in columns], desc="Embedding rows and benchmark views")
    train, vectors = embedded[: len(queries)], embedded[len(queries) :]
    cut = {b.name: threshold if method == "platypus" else RULES[b.name].candidate for b in benchmarks}
    best: dict[tuple[int, str, int], tuple[float, int]] = {}
    for q, col, score in similar_pairs(train, vectors, min(cut.values())):
        bench, j = columns[col][:2]
        key = (owner[q], bench.name, j)
        if score >= cut[bench.name] - ROUNDING and score > best.get(key, (-1.0, 0))[0]:
            best[key] = (score, col)
    hits = []
    row_numbers: dict[int, set[float]] = {}
    for (i, _, j), (score, col) in sorted(best.items()):
        bench, _, view, view_text = columns[col]
        item = bench.items[j]
        output = rows[i]["output"]
        if method == "multiview":
            if i not in row_numbers:
                row_numbers[i] = stated_numbers(texts[i])
            reason, numbers_found = decide(RULES[bench.name], score, row_numbers[i], view_text)
            if not reason:
                continue
        category, likeness, verdict = categorize(
            texts[i], output, view_text, item.answers, bench.numeric, item.wrong
        )
        found = None
        if method == "multiview":
            ratio = length_ratio(texts[i], view_text)
            found = Evidence(score, view, numbers_found, likeness.score, verdict, ratio, reason)
        hits.append(
            {
                "row": i,
                "benchmark": bench.name,
                "item": j,
                "score": round(score, 4),
                "view": view,
                "category": category,
                "word_overlap": round(likeness.score, 3),
                "answer": verdict,
                **({"evidence": found.record()} if found else {}),
                "training_text": texts[i],
                "training_output": output if len(output) <= _SHOWN else output[:_SHOWN] + "…",
                "benchmark_question": item.question,
                "benchmark_answer": item.answers[0] if item.answers else "",
            }
        )
    return hits


def _summary(hits: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, int]]:
    """Flagged rows per benchmark and category (a row counts once per benchmark: its worst hit)."""
    worst: dict[tuple[str, int], str] = {}
    for hit in hits:
        key = (hit["benchmark"], hit["row"])
        if key not in worst or SEVERITY[hit["category"]] > SEVERITY[worst[key]]:
            worst[key] = hit["category"]
    summary = {name: dict.fromkeys(CATEGORIES, 0) for name in names}
    for (name, _), category in worst.items():
        summary[name][category] += 1
    return summary


def row_categories(hits: list[dict[str, Any]]) -> dict[int, str]:
    """Each flagged row's category: the most severe of its hits, over all benchmarks."""
    out: dict[int, str] = {}
    for hit in hits:
        row = hit["row"]
        if row not in out or SEVERITY[hit["category"]] > SEVERITY[out[row]]:
            out[row] = hit["category"]
    return out


def _markdown(report: dict[str, Any]) -> str:
    def cell(text: str) -> str:
        text = " ".join(str(text).split())
        return (text if len(text) <= _SHOWN else text[:_SHOWN] + "…").replace("|", "\\|")

    lines = [
        "# Leak report",
        "",
        f"Embedding model `{report['embedding_model']}` (revision `{report['embedding_model_revision']}`), "
        f"cosine threshold {report['threshold']:g}. {report['rows_checked']} training rows checked, "
        f"{len(report['hits'])} hits on {report['rows_flagged']} rows; {report['removed']} rows removed"
        + (f", categories kept: {', '.join(report['keep'])}." if report["keep"] else "."),
        "",
        "| benchmark | " + " | ".join(CATEGORIES) + " |",
        "|---|" + "---|" * len(CATEGORIES),
    ]
    for name, counts in report["summary"].items():
        lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in CATEGORIES) + " |")
    lines += ["", "Counts are flagged training rows (a row counts once per benchmark, by its worst hit).", ""]
    lines += _rule_markdown(report.get("rule"), report.get("source"))
    if report["hits"]:
        lines += [
            "## Hits",
            "",
            "| row | benchmark | item | score | view | decided by | numbers found | category | training text "
            "| benchmark question |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for h in report["hits"]:
            ev = h.get("evidence") or {}
            lines.append(
                f"| {h['row']} | {h['benchmark']} | {h['item']} | {h['score']:.3f} | {h.get('view', 'item')} "
                f"| {ev.get('decided_by', 'cosine')} | {ev.get('numbers_found', '')} | {h['category']} "
                f"| {cell(h['training_text'])} | {cell(h['benchmark_question'])} |"
            )
    return "\n".join(lines) + "\n"


def _rule_markdown(rule: dict[str, Any] | None, source: dict[str, Any] | None) -> list[str]:
    """The decision rule and (for a file or Hub dataset) the column mapping, as report lines."""
    lines = []
    if source and source.get("kind") != "artifact":
        guessed = set(source.get("guessed_columns", []))
        mapped = ", ".join(
            f"{k} = `{v}`" + (" (guessed)" if k in guessed else "") for k, v in source["columns"].items()
        )
        lines += [f"Source: {source['kind']} `{source['name']}`; columns: {mapped}.", ""]
    if rule and rule.get("method") == "multiview":
        lines += [
            f"Method: multiview (views: {', '.join(rule['views'])}); {rule['decision']}.",
            "",
            "| benchmark | candidate | sure | numbers |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {r['candidate']:g} | {r['sure']:g} | {r['numbers']:g} |"
            for name, r in rule["benchmarks"].items()
        ]
        lines.append("")
    elif rule:
        lines += [f"Method: platypus (the question alone, cosine >= {rule['threshold']:g}).", ""]
    return lines


def check_dataset(
    dataset_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
    method: Method = "multiview",
    threshold: float | None = None,
    keep: Sequence[str] = (),
    model: str = DEFAULT_MODEL,
    benchmark_files: dict[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
    source: SourceOptions | None = None,
) -> CheckResult:
    """Check a dataset against benchmark test sets; with ``out_dir``, write the cleaned
    artifact (data, manifest, JSON and Markdown report, leak certificate) there, atomically.

    ``dataset_dir`` is a dataset artifact folder, or (see ``source``) a local jsonl/json/csv/
    parquet file or a Hub dataset id read through ``source`` (columns, config, split,
    revision). ``method`` ``multiview`` (views and the two-stage rule of ``rule``) or
    ``platypus`` (the paper's single cut, ``threshold``, default 0.8, on the item's question).
    A cleaned artifact already made from the same data, benchmarks, model, method, threshold
    and ``keep`` is kept (unless ``force``) and its stored result returned."""
    if method == "multiview" and threshold is not None:
        raise HubkitError(
            "threshold: a single cosine cut applies with the platypus method "
            "(the multiview method's thresholds are per benchmark)"
        )
    threshold = PLATYPUS_THRESHOLD if threshold is None else threshold
    try:  # the recipe's decontam section says what a valid method, threshold and keep are
        DecontamSection(method=method, threshold=threshold, keep=list(keep))
    except ValidationError as exc:
        raise HubkitError(format_validation_error(exc, "decontam")) from None
    if not benchmarks:
        raise HubkitError("benchmarks: name at least one benchmark to check against")
    names = list(dict.fromkeys(benchmarks))
    dataset = read_source(dataset_dir, source)
    rows = dataset.rows
    loaded = load_benchmarks(names, benchmark_files)
    embedder = method_embedder(method, model, cache_dir, progress)
    if method == "multiview":
        threshold = min(RULES[name].candidate for name in names)
    rule = rule_record(names, method, threshold)
    inputs = _inputs(dataset.sha256, loaded, embedder, threshold, keep, rule)
    if out_dir is not None and not force and is_up_to_date(out_dir, inputs):
        return _stored(Path(out_dir))
    hits = find_hits(rows, loaded, embedder, method, threshold)
    flagged = row_categories(hits)
    drop = {row for row, category in flagged.items() if category not in keep}
    clean = [row for i, row in enumerate(rows) if i not in drop]
    remaining = {c for row, c in flagged.items() if row not in drop}
    result = CheckResult(
        rows_checked=len(rows),
        hits=hits,
        summary=_summary(hits, names),
        removed=len(drop),
        kept_flagged=len(flagged) - len(drop),
        passed=not remaining.intersection(LEAKING) if out_dir is not None else not hits,
    )
    result.report = {
        "source": dataset.record(),
        "embedding_model": embedder.model_id,
        "embedding_model_revision": embedder.revision,
        "threshold": threshold,
        "rule": rule,
        "keep": sorted(keep),
        "rows_checked": len(rows),
        "rows_flagged": len(flagged),
        "removed": result.removed,
        "kept": len(clean),
        "kept_flagged": result.kept_flagged,
        "summary": result.summary,
        "hits": hits,
    }
    if out_dir is not None:
        result.out, result.certificate = _write_clean(
            dataset.folder, Path(out_dir), clean, loaded, embedder, result, inputs
        )
    return result


def _inputs(
    dataset_sha256: str,
    benchmarks: list[Benchmark],
    embedder: Embedder,
    threshold: float,
    keep: Sequence[str],
    rule: dict[str, Any],
) -> dict[str, Any]:
    """What a cleaned artifact is made from: equal inputs give an equal artifact."""
    return {
        "dataset": dataset_sha256,
        "benchmarks": {b.name: b.sha256 for b in benchmarks},
        "embedding_model": embedder.revision,
        "threshold": threshold,
        "rule": digest_of(rule),
        "keep": sorted(keep),
    }


def _stored(out: Path) -> CheckResult:
    """The result of an earlier check, read back from the artifact it wrote."""
    report = LeakReport.read(out).to_json_dict()
    certificate = LeakCertificate.read(out).to_json_dict()
    return CheckResult(
        rows_checked=report["rows_checked"],
        hits=report["hits"],
        summary=report["summary"],
        removed=report["removed"],
        kept_flagged=report["kept_flagged"],
        passed=certificate["passed"],
        out=out,
        report=report,
        certificate=certificate,
    )


def _write_clean(
    source: Path | None,
    out: Path,
    rows: list[dict[str, str]],
    benchmarks: list[Benchmark],
    embedder: Embedder,
    result: CheckResult,
    inputs: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:
    has_manifest = source is not None and (source / MANIFEST).is_file()
    built = DatasetManifest.read(source).to_json_dict() if has_manifest else {}
    report = result.report
    with atomic_folder(out) as tmp:
        write_rows(rows, tmp / DATA_FILE)
        certificate = LeakCertificate(
            passed=result.passed,
            dataset_sha256=sha256_file(tmp / DATA_FILE),
            input_dataset_sha256=inputs["dataset"],
            benchmarks={b.name: b.record() for b in benchmarks},
            embedding_model=embedder.model_id,
            embedding_model_revision=embedder.revision,
            threshold=report["threshold"],
            rule=report["rule"],
            source=report["source"],
            removed_categories=[c for c in CATEGORIES if c not in report["keep"]],
            kept_categories=report["keep"],
            rows_checked=report["rows_checked"],
            rows_flagged=report["rows_flagged"],
            rows_removed=report["removed"],
            rows_kept_flagged=report["kept_flagged"],
            hits=len(report["hits"]),
            summary=report["summary"],
            hubkit_version=__version__,
        ).to_json_dict()
        write_json(tmp / REPORT_JSON, LeakReport(**report).to_json_dict())
        (tmp / REPORT_MD).write_text(_markdown(report), encoding="utf-8")
        write_json(tmp / LeakCertificate.FILE, certificate)
        carried = {k: built[k] for k in ("recipe", "sources", "dedup", "embedding") if k in built}
        write_manifest(
            tmp,
            "dataset",
            inputs=inputs,
            **carried,
            rows=len(rows),
            decontam={k: certificate[k] for k in ("passed", "threshold", "rows_removed", "kept_categories")},
        )
    return out, certificate


def check_recipe(
    recipe: Recipe,
    dataset_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> CheckResult:
    """``check_dataset`` with the recipe's ``decontam`` section (and ``data.embedding_model``) as
    defaults: ``runs/<name>/dataset`` in, ``runs/<name>/dataset-clean`` out, benchmark files
    relative to the recipe. ``overrides`` (non-None) win over the recipe.

    ``benchmark_files`` given here are added over the recipe's. The recipe's files for
    benchmarks not checked (``--benchmarks gsm8k`` with a recipe naming all five) are dropped,
    unless the name is no benchmark at all (a typo still fails); a file given here for a
    benchmark not checked still fails, as the caller asked for it."""
    section = recipe.decontam
    given = {k: v for k, v in overrides.items() if v is not None}
    checked = set(given.get("benchmarks", section.benchmarks))
    recipe_files = {
        k: _recipe_ref(recipe, v)
        for k, v in section.benchmark_files.items()
        if k in checked or k not in LOADERS
    }
    method = given.get("method", section.method)
    options: dict[str, Any] = {
        "benchmarks": section.benchmarks,
        "method": method,
        "threshold": section.threshold if method == "platypus" else None,
        "keep": section.keep,
        "model": recipe.data.embedding_model,
        **given,
        "benchmark_files": {**recipe_files, **given.get("benchmark_files", {})},
    }
    dataset = Path(dataset_dir) if dataset_dir is not None else recipe.run_dir() / "dataset"
    out = Path(out_dir) if out_dir is not None else recipe.run_dir() / "dataset-clean"
    return check_dataset(dataset, out, **options)


def _recipe_ref(recipe: Recipe, ref: str) -> str:
    """A benchmark file named in a recipe, as ``Recipe.resolve`` finds it (``hub:`` refs as they are)."""

    return ref if ref.startswith("hub:") else str(recipe.resolve(ref))
