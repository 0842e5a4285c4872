"""`hubkit data check` on any dataset: a local jsonl/csv/parquet file or a Hub dataset (the local
Hub), with columns named or guessed; the same report and certificate as for an artifact."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_decontam import run_cli

from hubkit.artifacts import read_json


@pytest.fixture(scope="module")
def gsm(shared_data: Path, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A 40-item GSM8K test excerpt and records in GSM8K's own columns: two test questions, three
    GSM8K-train questions."""
    folder = tmp_path_factory.mktemp("gsm")
    lines = (
        (shared_data / "benchmarks" / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    )
    (folder / "gsm8k.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = [json.loads(line) for line in lines]
    train = [json.loads(line) for line in (shared_data / "train" / "gsm8k_train.jsonl").open()][:3]
    records = [
        {"question": r["question"], "answer": r["answer"], "id": k}
        for k, r in enumerate([test[3], *train, test[7]])
    ]
    return folder, records


def _args(folder: Path, cache: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("HUBKIT_CACHE", str(cache))
    return ["--benchmarks", "gsm8k", "--benchmark-file", f"gsm8k={folder / 'gsm8k.jsonl'}"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_check_a_local_file_with_guessed_columns(suffix, gsm, tmp_path, capsys, monkeypatch):
    folder, records = gsm
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    out = tmp_path / "clean"
    code, stdout, _ = run_cli(
        ["data", "check", str(path), "--out", str(out), *_args(folder, tmp_path / "c", monkeypatch)], capsys
    )
    assert code == 0, stdout
    assert "Columns: instruction=question (guessed), input=None (guessed), output=answer (guessed)" in stdout
    report = read_json(out / "leak_report.json")
    assert report["source"] == {
        "kind": "file", "name": path.name,
        "columns": {"instruction": "question", "input": None, "output": "answer"},
        "guessed_columns": ["instruction", "input", "output"],
    }  # fmt: skip
    assert sorted(h["row"] for h in report["hits"]) == [0, 4]
    certificate = read_json(out / "leak_certificate.json")
    assert (
        certificate["passed"] and certificate["rows_removed"] == 2 and certificate["source"]["kind"] == "file"
    )
    kept = pq.read_table(out / "data.parquet").column("instruction").to_pylist()
    assert kept == [r["question"] for r in records[1:4]]
    assert "columns: instruction = `question` (guessed)" in (out / "leak_report.md").read_text()


def test_named_columns_and_a_wrong_name(gsm, tmp_path, capsys, monkeypatch):
    folder, records = gsm
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"q": r["question"], "a": r["answer"]}) + "\n" for r in records), encoding="utf-8"
    )
    args = _args(folder, tmp_path / "c", monkeypatch)
    code, stdout, err = run_cli(["data", "check", str(path), *args], capsys)
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"Error: {path}: no column for instruction "
        "(looked for instruction, prompt, question, query, problem); "
        "columns are q, a; name it with --columns instruction=COLUMN"
    )
    code, stdout, err = run_cli(
        ["data", "check", str(path), "--columns", "instruction=question,output=a", *args], capsys
    )
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"Error: {path}: no column 'question' (given for instruction); columns are q, a"
    )
    code, stdout, err = run_cli(
        ["data", "check", str(path), "--columns", "instruction=q,output=a", *args], capsys
    )
    assert code == 1 and "2 rows match benchmark questions" in err  # hits, and no --out
    assert "Columns: instruction=q, input=None (guessed), output=a;" in stdout


def test_check_a_hub_dataset(local_hub, write_token, gsm, tmp_path, capsys, monkeypatch):
    from datasets import Dataset

    folder, records = gsm
    Dataset.from_list(records).push_to_hub("alice/mixed-gsm", token=write_token)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "clean"
    args = ["data", "check", "alice/mixed-gsm", "--split", "train", "--out", str(out)]
    code, stdout, _ = run_cli([*args, *_args(folder, tmp_path / "c", monkeypatch)], capsys)
    assert code == 0, stdout
    report = read_json(out / "leak_report.json")
    assert report["source"]["kind"] == "hub" and report["source"]["split"] == "train"
    assert sorted(h["row"] for h in report["hits"]) == [0, 4]
    assert read_json(out / "leak_certificate.json")["source"]["name"] == "alice/mixed-gsm"


def test_missing_file_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["data", "check", str(tmp_path / "rows.jsonl")], capsys)
    assert (
        code == 1
        and err.strip()
        == f"Error: {tmp_path / 'rows.jsonl'}: file not found (nor a Hub dataset id: OWNER/NAME)"
    )
