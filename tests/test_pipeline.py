"""`hubkit train-and-push` on the tiny recipe against a local Hub: the offline main job, gates
that stop before the first byte is pushed, resuming after a kill, and server errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest
from faulty_proxy import FaultyProxy
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file

from hubkit import pipeline
from hubkit.artifacts import read_json
from hubkit.errors import HubkitError
from hubkit.hub import LocalHub
from hubkit.pipeline import STAGES, load_back, merge_ref, train_and_push
from hubkit.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.yaml"
FAST = ["training.max_steps=6", "training.save_steps=3", "training.logging_steps=1"]


def _recipe(tag: str, *sets: str):
    """The tiny recipe, trained briefly, publishing to repos named after ``tag``."""
    hub = [f"hub.dataset_repo=alice/{tag}-data", f"hub.adapter_repo=alice/{tag}-adapter"]
    return load_recipe(TINY, [*FAST, *hub, f"hub.merged_repo=alice/{tag}-merged", *sets])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One runs/ folder for the in-process tests, so later tests resume the earlier ones' stages."""
    return tmp_path_factory.mktemp("pipeline")


def _repos(tag: str) -> dict[str, bool]:
    api = HfApi()
    return {
        "data": api.repo_exists(f"alice/{tag}-data", repo_type="dataset"),
        "adapter": api.repo_exists(f"alice/{tag}-adapter"),
        "merged": api.repo_exists(f"alice/{tag}-merged"),
    }


def test_end_to_end_then_rerun_skips_everything(local_hub, work, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    result = train_and_push(_recipe("e2e"), echo=lambda _: None)
    assert [s.name for s in result.stages] == list(STAGES)
    api = HfApi()
    for role, push in result.pushes.items():
        assert push.created_commit, role
        repo_type = "dataset" if role == "dataset" else "model"
        assert "README.md" in api.list_repo_files(push.repo_id, repo_type=repo_type)
        assert [t.name for t in api.list_repo_refs(push.repo_id, repo_type=repo_type).tags] == ["v0.1.0"]
    assert "training_loss.png" in api.list_repo_files("alice/e2e-adapter")

    check = load_back(result)
    assert check["merged_logits_equal"] and check["adapter_logits_equal"]
    assert check["dataset_rows"] > 0 and isinstance(check["generation"], str)
    # An adapter that no longer matches what was pushed fails the load-back.
    tampered = tmp_path / "adapter"
    shutil.copytree(result.artifacts["adapter"], tampered)
    weights = load_file(tampered / "adapter_model.safetensors")
    save_file({k: v * 2 for k, v in weights.items()}, tampered / "adapter_model.safetensors")
    with pytest.raises(HubkitError, match="reloaded adapter's logits differ from the local adapter's"):
        load_back(dataclasses.replace(result, artifacts={**result.artifacts, "adapter": tampered}))

    again = train_and_push(_recipe("e2e"), echo=lambda _: None)
    status = {s.name: s.status for s in again.stages}
    assert [status[s] for s in ("data-build", "data-check", "train", "merge", "verify")] == ["skipped"] * 5
    assert all(not p.created_commit and p.uploaded_bytes == 0 for p in again.pushes.values())
    table = again.summary().splitlines()
    assert [line.split()[:2] for line in table[1 : len(STAGES) + 1]] == [
        [stage, "ran" if stage in ("cards", "push") else "skipped"] for stage in STAGES
    ]
    for role, push in again.pushes.items():  # repo, unchanged commit (" ="), 0 bytes sent, URL
        row = next(line for line in table if line.startswith(role + " "))
        assert row.split()[1:5] == [push.repo_id, push.commit[:12], "=", "0B"] and push.url in row


def test_force_redoes_one_stage(local_hub, work, monkeypatch):
    monkeypatch.chdir(work)
    result = train_and_push(_recipe("e2e"), force=["verify"], dry_run=True, echo=lambda _: None)
    status = {s.name: s.status for s in result.stages}
    assert status["verify"] == "ran" and status["train"] == "skipped" and status["push"] == "dry-run"
    with pytest.raises(HubkitError, match="--force nope: unknown stage"):
        train_and_push(_recipe("e2e"), force=["nope"], echo=lambda _: None)


@pytest.mark.parametrize(
    ("field", "error"),
    [
        ("source", r"tiny.yaml: data.sources\[0\].license is required by the dataset card"),
        ("hub", "tiny.yaml: hub.license is required by the model cards"),
    ],
)
def test_what_the_cards_need_is_checked_before_any_stage(monkeypatch, tmp_path, field, error):
    monkeypatch.chdir(tmp_path)
    recipe = _recipe("nolicense")
    if field == "source":
        sources = [recipe.data.sources[0].model_copy(update={"license": None})]
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"sources": sources})})
    else:
        recipe = recipe.model_copy(update={"hub": recipe.hub.model_copy(update={"license": None})})
    with pytest.raises(HubkitError, match=error):
        train_and_push(recipe, echo=lambda _: None)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("training.learnig_rate=1e-3", r"unknown key 'training\.learnig_rate' \(not an SFTConfig field\)"),
        ("training.lr_scheduler_type=cosin", r"training: .*cosin"),
        ("data.prompt_template=alpacca", r"data\.prompt_template: unknown template 'alpacca'"),
    ],
)
def test_training_settings_are_checked_before_any_stage(monkeypatch, tmp_path, setting, error):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubkitError, match=rf"^{re.escape(str(TINY))}: {error}") as caught:
        train_and_push(_recipe("typo", setting), echo=lambda _: None)
    assert len(str(caught.value).splitlines()) == 1
    assert not (tmp_path / "runs" / "tiny" / "dataset").exists()


def test_planted_benchmark_question_stops_at_the_check(local_hub, work, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    bundled = Path(str(files("hubkit").joinpath("sample_data/benchmarks/gsm8k_test.jsonl")))
    item = json.loads(bundled.read_text().splitlines()[3])
    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps({"question": item["question"], "answer": item["answer"]}) + "\n")
    source = {
        "name": "planted",
        "path": str(planted),
        "columns": {"instruction": "question", "output": "answer"},
        "license": "mit",
    }
    sources = [s.model_dump(exclude_none=True) for s in _recipe("planted").data.sources] + [source]
    recipe = _recipe("planted", "name=tiny-planted", f"data.sources={json.dumps(sources)}")
    with pytest.raises(HubkitError, match=r"leak check found 1 hit\(s\) in the data .*nothing pushed"):
        train_and_push(recipe, echo=lambda _: None)
    assert _repos("planted") == {"data": False, "adapter": False, "merged": False}
    assert not (work / "runs" / "tiny-planted" / "adapter").exists()


def test_tainted_merge_partner_stops_at_the_gate(local_hub, work, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    partner = tmp_path / "partner"
    from hubkit.tiny import build_tiny_llama, sample_corpus

    build_tiny_llama(partner, sample_corpus())
    (partner / "README.md").write_text("---\ndatasets:\n- truthfulqa/truthful_qa\n---\n# a fine-tune\n")
    recipe = _recipe("tainted", f"merge.models=[{partner}]", "merge.weights=[0.5, 0.5]")
    with pytest.raises(HubkitError, match="truthful_qa"):
        train_and_push(recipe, echo=lambda _: None)
    assert _repos("tainted") == {"data": False, "adapter": False, "merged": False}


def test_a_model_merge_verifies_the_adapter_fold_first(local_hub, work, monkeypatch, tmp_path):
    monkeypatch.chdir(work)
    from hubkit.tiny import build_tiny_llama, sample_corpus

    partner = build_tiny_llama(tmp_path / "partner", sample_corpus(), seed=7)
    (partner / "README.md").write_text("---\ndatasets:\n- openai/gsm8k\n---\n# a fine-tune\n")
    recipe = _recipe("models", f"merge.models=[{partner}]", "merge.weights=[0.5, 0.5]")
    result = train_and_push(recipe, dry_run=True, echo=lambda _: None)
    fold = read_json(work / "runs" / "tiny" / "merged-adapter" / "manifest.json")
    assert fold["verification"]["passed"] and "verification.json" in fold["files"]
    # The model merge read the fold with its check: the fold's hash it records includes it.
    first = read_json(result.artifacts["merged"] / "provenance.json")["inputs"][0]
    assert first["id"].endswith("merged-adapter") and first["sha256"] == fold["content_hash"]

    again = train_and_push(recipe, dry_run=True, echo=lambda _: None)
    assert {s.name: s.status for s in again.stages}["merge"] == "skipped"
    assert read_json(work / "runs" / "tiny" / "merged-adapter" / "manifest.json") == fold


def test_merge_models_resolve_relative_to_the_recipe(local_hub, work, monkeypatch, tmp_path, tiny_llama):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    shutil.copy(TINY, recipes / "tiny.yaml")
    partner = shutil.copytree(tiny_llama, recipes / "partner")
    (partner / "README.md").write_text("---\ndatasets:\n- openai/gsm8k\n---\n# a fine-tune\n")
    monkeypatch.chdir(work)  # not the recipe's folder: "partner" is beside the recipe only
    recipe = load_recipe(recipes / "tiny.yaml", [*FAST, "merge.models=[partner]", "merge.weights=[0.5, 0.5]"])
    assert merge_ref(recipe, "partner") == str(partner.resolve())
    assert merge_ref(recipe, "openai/some-model") == "openai/some-model"
    result = train_and_push(recipe, dry_run=True, echo=lambda _: None)
    inputs = read_json(result.artifacts["merged"] / "provenance.json")["inputs"]
    assert [i["id"] for i in inputs[1:]] == ["partner"]  # by name; found relative to the merged model
    assert (result.artifacts["merged"] / inputs[1]["path"]).resolve() == partner.resolve()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_push_preflight_failure_publishes_no_repo(local_hub, work, monkeypatch, dry_run):
    """The merged folder fails its credential scan: the dataset and adapter are not pushed first,
    and a dry run, which runs the pre-flight's local checks, says so too."""
    monkeypatch.chdir(work)
    secret = work / "runs" / "tiny" / "merged" / "notes.txt"

    preflight = pipeline.preflight_push

    def plant(*args, **kwargs):  # after the cards stage, as the push stage starts
        secret.write_text("hf_" + "x" * 34)
        return preflight(*args, **kwargs)

    monkeypatch.setattr(pipeline, "preflight_push", plant)
    try:
        with pytest.raises(HubkitError, match=r"merged/notes\.txt: contains a Hugging Face token"):
            train_and_push(_recipe("preflight"), dry_run=dry_run, echo=lambda _: None)
    finally:
        secret.unlink(missing_ok=True)
    assert _repos("preflight") == {"data": False, "adapter": False, "merged": False}


def _fail_merged_commits(times: int):
    left = [times]

    def fail(method: str, path: str) -> bool:
        if method == "POST" and "/alice/" in path and "-merged/commit/" in path and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return fail


def test_server_errors_during_the_merged_upload(local_hub, work, monkeypatch):
    monkeypatch.chdir(work)
    with FaultyProxy(local_hub.endpoint, _fail_merged_commits(2)) as proxy:
        result = train_and_push(_recipe("flaky"), endpoint=proxy.endpoint, echo=lambda _: None)
    assert len(proxy.failures) == 2 and result.pushes["merged"].created_commit

    with FaultyProxy(local_hub.endpoint, _fail_merged_commits(1000)) as proxy:
        with pytest.raises(HubkitError, match=r"alice/down-merged: the Hub refused the request \(HTTP 500\)"):
            train_and_push(_recipe("down"), endpoint=proxy.endpoint, echo=lambda _: None)
    api = HfApi()
    for repo, repo_type in (("alice/down-data", "dataset"), ("alice/down-adapter", "model")):
        assert len(api.list_repo_commits(repo, repo_type=repo_type)) == 2  # whole: initial + ours
        assert "README.md" in api.list_repo_files(repo, repo_type=repo_type)
    assert [c.title for c in api.list_repo_commits("alice/down-merged")] == ["initial commit"]  # untouched


def _assert_plain_log(output: str) -> None:
    """What a CI log gets: lines, no bar redraws, no per-step dicts, no library warnings."""
    assert "\r" not in output, output[-3000:]
    assert not re.search(r"\{'\w+': ", output), output[-3000:]
    assert not re.search(r"Warning\b", output), output[-3000:]


def test_offline_main_job_resumes_after_a_kill(tmp_path):
    """The README's main job in a subprocess, its output a log (not a TTY): killed once training
    is done, then re-run. Each stage prints one line, then the summary (and what to run next)."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "PYTHONUNBUFFERED": "1"}
    env.pop("HF_ENDPOINT")
    env.pop("HF_TOKEN")
    env.pop("TRANSFORMERS_VERBOSITY", None)  # as a user's shell has it: hubkit quietens the libraries itself
    cmd = [sys.executable, "-m", "hubkit", "train-and-push", str(TINY), "--local-hub", str(tmp_path / "hub")]
    cmd += [f"--set={s}" for s in FAST]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    adapter = tmp_path / "runs" / "tiny" / "adapter" / "manifest.json"
    deadline = time.monotonic() + 300
    while not adapter.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    trained = first.stdout.read().decode()
    assert adapter.exists(), trained[-3000:]
    _assert_plain_log(trained)  # training ran: a loss bar at most, not one dict per step
    assert re.search(r"^data-build\s+ran\s.*\n(  .*\n)*data-check\s+ran\s", trained, re.M), trained

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    _assert_plain_log(second.stdout + second.stderr)
    lines = second.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("stage ")))
    # before the summary: the Hub, one line per stage, the load-back (progress lines are indented)
    progress = [line for line in lines[:table] if not line.startswith("  ")]
    assert progress[0].startswith("Local Hub at ")
    assert [line.split()[0] for line in progress[1 : 1 + len(STAGES)]] == list(STAGES), second.stdout
    assert progress[1 + STAGES.index("train")].split()[1] == "skipped"
    loaded = 1 + len(STAGES)
    assert "merged model and adapter logits equal the local ones" in progress[loaded]
    assert progress[loaded + 1].startswith("Generation from") and len(progress) == loaded + 2
    assert [line.split()[0] for line in lines[table + 1 : table + 1 + len(STAGES)]] == list(STAGES)
    assert progress[1].split()[3:] == ["300", "rows", "(0", "duplicates", "removed)"]
    steps = lines[lines.index("Next: load what was pushed") + 1 :]
    assert "datasets.load_dataset('hubkit/tiny-dataset'" in steps[2]
    assert "PeftModel.from_pretrained" in steps[4] and "revision='v0.1.0'" in steps[4]
    assert steps[-3:] == [  # repo ids and tags only: no local absolute path, no user name
        "  hubkit verify dataset hubkit/tiny-dataset --revision v0.1.0",
        "  hubkit verify adapter hubkit/tiny-adapter --revision v0.1.0 --dataset hubkit/tiny-dataset "
        "--dataset-revision v0.1.0",
        "  hubkit verify merged hubkit/tiny-merged --revision v0.1.0",
    ]
    assert not any(str(tmp_path) in line or str(Path.home()) in line for line in steps), steps
    with LocalHub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint)
        assert {m.id for m in api.list_models()} >= {"hubkit/tiny-adapter", "hubkit/tiny-merged"}
        _assert_no_local_path(api, tmp_path)


def _assert_no_local_path(api: HfApi, cwd: Path) -> None:
    """No file of the quick start's three repos names the working directory, home or user."""
    import getpass

    needles = {str(cwd), str(cwd.resolve()), str(Path.home()), str(REPO), f"/{getpass.getuser()}/"}
    repos = {"hubkit/tiny-dataset": "dataset", "hubkit/tiny-adapter": "model", "hubkit/tiny-merged": "model"}
    for repo_id, repo_type in repos.items():
        folder = Path(api.snapshot_download(repo_id, repo_type=repo_type, local_dir=cwd / "pulled" / repo_id))
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
            data = path.read_bytes()
            leaked = sorted(n for n in needles if n.encode() in data)
            assert not leaked, f"{repo_id}/{path.relative_to(folder)} holds {leaked}"


def test_verify_rederives_the_published_claims_and_names_a_forged_one(local_hub, work, monkeypatch, tmp_path):
    from hubkit.proofs import verify_adapter, verify_dataset, verify_merged

    monkeypatch.chdir(work)
    # the first test's repos; a tag of its own, as an earlier test may have run `verify` again
    result = train_and_push(_recipe("e2e", "version=v0.1.0-verify"), echo=lambda _: None)
    data, adapter, merged = (result.pushes[r].repo_id for r in ("dataset", "adapter", "merged"))
    for claims in (verify_dataset(data), verify_adapter(adapter, dataset=data), verify_merged(merged)):
        assert all(c.ok for c in claims), [c for c in claims if not c.ok]

    api = HfApi()

    def commit(repo_id: str, path: str, content: bytes, repo_type: str = "model") -> None:
        """A new commit made around hubkit's gates, as someone holding the repo could."""
        api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id=repo_id, repo_type=repo_type)

    def wrong(claims) -> list[str]:
        return [c.name for c in claims if not c.ok]

    import pyarrow.parquet as pq

    local = result.artifacts["dataset"]
    table = pq.read_table(local / "data.parquet").to_pylist()
    gsm8k_test = files("hubkit") / "sample_data" / "benchmarks" / "gsm8k_test.jsonl"
    test = json.loads(gsm8k_test.read_text().splitlines()[0])
    table[0] |= {"instruction": test["question"], "output": test["answer"]}
    from hubkit.data import write_rows

    write_rows(table, tmp_path / "data.parquet")
    commit(data, "data.parquet", (tmp_path / "data.parquet").read_bytes(), "dataset")
    assert {"data sha256", "leaking rows left", "passed"} <= set(wrong(verify_dataset(data)))
    certificate = read_json(local / "leak_certificate.json") | {"threshold": 0.99}
    commit(data, "leak_certificate.json", json.dumps(certificate).encode(), "dataset")
    commit(data, "data.parquet", (local / "data.parquet").read_bytes(), "dataset")  # data back, cert edited
    assert wrong(verify_dataset(data)) == ["files hash to the manifest"]

    other = load_file(result.artifacts["adapter"] / "adapter_model.safetensors")
    save_file({k: v.flip(0) for k, v in other.items()}, tmp_path / "adapter_model.safetensors")
    commit(adapter, "adapter_model.safetensors", (tmp_path / "adapter_model.safetensors").read_bytes())
    assert wrong(verify_adapter(adapter, dataset=data, dataset_revision=result.pushes["dataset"].commit)) == [
        "files hash to the manifest"
    ]

    shard = sorted(result.artifacts["merged"].glob("*.safetensors"))[0]
    tensors = load_file(shard)
    name = next(n for n in sorted(tensors) if "mlp" in n)
    save_file({**tensors, name: tensors[name] * 1.5}, tmp_path / shard.name, metadata={"format": "pt"})
    commit(merged, shard.name, (tmp_path / shard.name).read_bytes())
    failed = wrong(verify_merged(merged))
    assert {"files hash to the manifest", "files sha256", "passed"} <= set(failed), failed
