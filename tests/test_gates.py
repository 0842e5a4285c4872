"""`hubkit push` gates every hubkit artifact kind by recomputing its claims, on real files and
the local Hub: an edited certificate, provenance or manifest is refused before anything is sent,
and weights or data without a hubkit manifest need --no-gate, which the commit and card record."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from certificates import complete_certificate
from huggingface_hub import HfApi

from hubkit.artifacts import read_json, sha256_file, write_json, write_manifest
from hubkit.data import write_rows
from hubkit.errors import HubkitError
from hubkit.portable import remember_location
from hubkit.publish import push_folder


def _rows(n: int = 40) -> list[dict[str, str]]:
    lines = (files("hubkit") / "sample_data" / "gsm8k_train_sample.jsonl").read_text().splitlines()[:n]
    return [
        {"instruction": r["question"], "input": "", "output": r["answer"], "data_source": "gsm8k"}
        for r in map(json.loads, lines)
    ]


def _certificate(data: Path, rows: int, **changes) -> dict:
    return complete_certificate(sha256_file(data), rows, **changes)


def _dataset(folder: Path, rows: list[dict[str, str]], **changes) -> Path:
    folder.mkdir(parents=True)
    write_rows(rows, folder / "data.parquet")
    write_json(folder / "leak_certificate.json", _certificate(folder / "data.parquet", len(rows), **changes))
    write_manifest(folder, "dataset", rows=len(rows))
    return folder


def _adapter(folder: Path, dataset: Path, certificate: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    data_sha = sha256_file(dataset / "data.parquet")
    provenance = {  # every field `hubkit train` writes (AdapterProvenance)
        "base_model": {"name_or_path": "hubkit:tiny-llama"},
        "dataset": {"path": dataset.name, "data_sha256": data_sha, "rows": 40},
        "datasets": [],
        "leak_certificate": read_json(dataset / "leak_certificate.json")
        if certificate is None
        else certificate,
        "allow_unchecked_data": False,
        "recipe": {"name": "gate", "model": {"name_or_path": "hubkit:tiny-llama"}},
        "libraries": {},
        "hardware": {"processes": 1, "gpus": [], "cpu": "x86_64", "cpu_count": 2},
    }
    write_json(folder / "provenance.json", provenance)
    write_manifest(folder, "adapter", dataset_sha256=data_sha)
    return folder


def test_a_checked_dataset_passes_its_gate_and_says_what_it_recomputed(local_hub, tmp_path):
    folder = _dataset(tmp_path / "dataset-clean", _rows())
    result = push_folder(folder, "alice/gate-dataset", repo_type="dataset")
    assert (
        result.gate
        == "dataset gate: data.parquet hashed again (40 rows) and matches its passing leak certificate"
    )


def _planted(tmp_path: Path) -> list[dict[str, str]]:
    """Training rows with a GSM8K test question planted among them."""
    test = json.loads(
        (files("hubkit") / "sample_data/benchmarks/gsm8k_test.jsonl").read_text().splitlines()[0]
    )
    return [
        *_rows(),
        {"instruction": test["question"], "input": "", "output": test["answer"], "data_source": "x"},
    ]


@pytest.mark.parametrize(
    ("forge", "error"),
    [
        (
            "hand-written",
            r"leak_certificate\.json: missing field 'benchmarks': not a certificate `hubkit data",
        ),
        ("failed", r"leak_certificate\.json: leak check did not pass"),
        ("counts", r"leak_certificate\.json: 42 rows checked - 2 removed = 40, but data\.parquet holds 41"),
        ("none", r"leak_certificate\.json: missing; run `hubkit data check`"),
        ("data edited", r"data\.parquet: changed since manifest\.json was written"),
    ],
)
def test_a_forged_or_stale_dataset_is_refused_before_anything_is_sent(local_hub, tmp_path, forge, error):
    folder = _dataset(tmp_path / "ds", _rows(), passed=forge != "failed")
    data, certificate = folder / "data.parquet", folder / "leak_certificate.json"
    if (
        forge == "hand-written"
    ):  # the probe: the data holds a GSM8K test question, the certificate says passed
        write_rows(_planted(tmp_path), data)
        write_json(certificate, {"passed": True, "dataset_sha256": sha256_file(data)})
        write_manifest(folder, "dataset")
    elif forge == "counts":  # a full certificate copied over data with one more row
        write_rows(_planted(tmp_path), data)
        write_json(certificate, _certificate(data, 40))
        write_manifest(folder, "dataset")
    elif forge == "none":
        certificate.unlink()
        write_manifest(folder, "dataset")
    elif forge == "data edited":
        write_rows(_planted(tmp_path), data)
    repo_id = f"alice/gate-forged-{forge.replace(' ', '-')}"
    with pytest.raises(HubkitError, match=error):
        push_folder(folder, repo_id, repo_type="dataset")
    assert not HfApi().repo_exists(repo_id, repo_type="dataset")


def test_an_adapter_carries_the_certificate_of_the_dataset_it_names(local_hub, tmp_path):
    dataset = _dataset(tmp_path / "dataset-clean", _rows())
    adapter = _adapter(tmp_path / "adapter", dataset)
    with pytest.raises(
        HubkitError, match=r"is not on this machine, so its certificate cannot be checked here"
    ):
        push_folder(adapter, "alice/gate-adapter")
    remember_location(sha256_file(dataset / "data.parquet"), dataset)  # as `hubkit train` does
    result = push_folder(adapter, "alice/gate-adapter")
    assert (
        result.gate
        == "adapter gate: its leak certificate is the one of the dataset it names (data.parquet hashed again)"
    )


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        ("flipped", r"provenance\.json: leak_certificate differs from .*leak_certificate\.json"),
        ("bare", r"provenance\.json: missing field 'leak_certificate\.dataset_sha256'"),
        ("other data", r"provenance\.json: leak_certificate is for data with sha256"),
        ("deleted", r"provenance\.json: missing; an adapter's lineage is its provenance"),
        ("weights swapped", r"adapter_model\.safetensors: changed since manifest\.json was written"),
    ],
)
def test_an_adapter_with_edited_provenance_is_refused(local_hub, tmp_path, probe, error):
    dataset = _dataset(tmp_path / "dataset-clean", _rows(), passed=probe != "flipped")
    remember_location(sha256_file(dataset / "data.parquet"), dataset)
    adapter = _adapter(tmp_path / "adapter", dataset)
    provenance = read_json(adapter / "provenance.json")
    if probe == "flipped":  # the dataset failed its check; the adapter's copy is flipped to passed
        provenance["leak_certificate"]["passed"] = True
    elif probe == "bare":
        provenance["leak_certificate"] = {"passed": True}
    elif probe == "other data":
        provenance["leak_certificate"]["dataset_sha256"] = "0" * 64
    if probe == "deleted":
        (adapter / "provenance.json").unlink()
    else:
        write_json(adapter / "provenance.json", provenance)
    if probe == "weights swapped":
        (adapter / "adapter_model.safetensors").write_bytes(b"\1" * 64)
    else:  # the forger rewrites the manifest too, so only the recomputed claims can tell
        write_manifest(adapter, "adapter", dataset_sha256=sha256_file(dataset / "data.parquet"))
    with pytest.raises(HubkitError, match=error):
        push_folder(adapter, f"alice/gate-adapter-{probe.replace(' ', '-')}")
    assert not HfApi().repo_exists(f"alice/gate-adapter-{probe.replace(' ', '-')}")


@pytest.mark.parametrize(
    ("name", "provenance_kind", "error"),
    [
        (
            "model.safetensors",
            None,
            r"model\.safetensors: model weights or data without a hubkit manifest\.json",
        ),
        ("pytorch_model.bin", None, r"pytorch_model\.bin: model weights or data without"),
        ("train.jsonl", None, r"train\.jsonl: model weights or data without"),
        ("model.safetensors", "merged", r"provenance\.json: a hubkit merged without its manifest\.json"),
    ],
)
def test_weights_or_data_without_a_manifest_need_no_gate(local_hub, tmp_path, name, provenance_kind, error):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / name).write_bytes(b"\0" * 128)
    if provenance_kind:
        write_json(folder / "provenance.json", {"kind": provenance_kind})
    repo_id = f"alice/gate-plain-{name.replace('.', '-')}-{provenance_kind}"
    with pytest.raises(HubkitError, match=error):
        push_folder(folder, repo_id)
    assert not HfApi().repo_exists(repo_id)


def test_a_manifest_of_an_unknown_kind_is_refused(tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 128)
    write_manifest(folder, "model")  # the probe: kind changed from merged to model
    with pytest.raises(HubkitError, match=r"manifest\.json: kind 'model' is not a hubkit artifact"):
        push_folder(folder, "alice/gate-kind", endpoint="http://127.0.0.1:9")


def test_no_gate_is_recorded_in_the_commit_and_the_card(local_hub, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 128)
    (folder / "README.md").write_text("# my model\n")
    command = [sys.executable, "-m", "hubkit", "push", str(folder), "alice/gate-nogate", "--no-gate"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "No gate (--no-gate)" in run.stdout
    api = HfApi()
    commit = api.list_repo_commits("alice/gate-nogate")[0]
    assert commit.title.endswith("(--no-gate)") and "no hubkit gate checked" in commit.message
    card = Path(api.hf_hub_download("alice/gate-nogate", "README.md")).read_text()
    assert card.startswith("# my model\n") and "Pushed with `hubkit push --no-gate`" in card
    assert (folder / "README.md").read_text() == "# my model\n"  # the folder itself is left as it was
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Up to date, no commit made" in again.stdout


def test_cli_verify_prints_the_claims_and_exits_1_naming_a_wrong_one(tmp_path):
    folder = _dataset(tmp_path / "dataset-clean", _rows())  # its gsm8k hash "ab" is not the file's
    command = [sys.executable, "-m", "hubkit", "verify", "dataset", str(folder)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    table = run.stdout.splitlines()
    assert table[0].split() == ["claim", "claimed", "recomputed", "ok"]
    assert max(map(len, table)) < 120, "\n".join(table)  # digests cut, a decision rule as its digest
    rows = {line.split("  ")[0]: line for line in table[1:]}
    assert rows["data sha256"].endswith("ok") and rows["gsm8k sha256"].endswith("MISMATCH")
    error = run.stderr.strip().splitlines()[-1]  # the last line; model loading may print progress before it
    assert error.startswith(f"Error: {folder}: 2 claim(s) do not hold: ") and "gsm8k sha256" in error
