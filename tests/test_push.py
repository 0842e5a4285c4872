"""`hubkit push` against the local Hub over real HTTP: one commit, no-op re-push, tags,
credential refusal, round-trip verification."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faulty_proxy import FaultyProxy
from huggingface_hub import HfApi

from hubkit.errors import HubkitError
from hubkit.publish import push_folder, scan_for_credentials


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "artifact"
    (root / "sub").mkdir(parents=True)
    (root / "README.md").write_text("# hello\n")
    (root / "config.json").write_text('{"a": 1}\n')
    (root / "sub" / "notes.txt").write_text("nested\n")
    (root / "assets.tar").write_bytes(os.urandom(300_000))  # an LFS file on the Hub
    return root


def _commits(repo_id: str, repo_type: str = "model") -> list[str]:
    return [c.commit_id for c in HfApi().list_repo_commits(repo_id, repo_type=repo_type)]


def test_push_once_then_noop(local_hub, tmp_path):
    root = _folder(tmp_path)
    first = push_folder(root, "alice/push-noop", tag="v0.1.0")
    assert first.created_commit and first.tag == "v0.1.0"
    assert first.uploaded_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    api = HfApi()
    tree = {f.path for f in api.list_repo_tree("alice/push-noop", recursive=True) if hasattr(f, "blob_id")}
    assert tree == {".gitattributes", "README.md", "config.json", "sub/notes.txt", "assets.tar"}
    lfs = next(f for f in api.list_repo_tree("alice/push-noop") if f.path == "assets.tar")
    assert lfs.lfs is not None
    assert [t.name for t in api.list_repo_refs("alice/push-noop").tags] == ["v0.1.0"]
    commits = _commits("alice/push-noop")

    second = push_folder(root, "alice/push-noop", tag="v0.1.0")
    assert not second.created_commit
    assert second.uploaded_bytes == 0 and second.changed == []
    assert second.commit == first.commit
    assert _commits("alice/push-noop") == commits


def test_push_mirrors_changes_in_one_commit(local_hub, tmp_path):
    root = _folder(tmp_path)
    first = push_folder(root, "alice/push-mirror")
    (root / "sub" / "notes.txt").unlink()
    (root / "config.json").write_text('{"a": 2}\n')
    second = push_folder(root, "alice/push-mirror", commit_message="update")
    assert second.created_commit
    assert second.changed == ["config.json"] and second.deleted == ["sub/notes.txt"]
    assert second.uploaded_bytes == (root / "config.json").stat().st_size
    commits = _commits("alice/push-mirror")
    assert commits[:2] == [second.commit, first.commit]
    files = HfApi().list_repo_files("alice/push-mirror")
    assert "sub/notes.txt" not in files and "config.json" in files


def test_folder_with_its_own_gitattributes_round_trips(local_hub, tmp_path):
    root = _folder(tmp_path)
    (root / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    first = push_folder(root, "alice/push-gitattributes")
    assert first.created_commit and ".gitattributes" in first.changed
    path = HfApi().hf_hub_download("alice/push-gitattributes", ".gitattributes", revision=first.commit)
    assert Path(path).read_bytes() == (root / ".gitattributes").read_bytes()
    assert not push_folder(root, "alice/push-gitattributes").created_commit


def test_a_settled_file_is_read_once_and_a_rewrite_is_seen(tmp_path, monkeypatch):
    from hubkit import artifacts

    reads: list[str] = []

    def counting_open(path, *args, **kwargs):
        reads.append(str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(artifacts, "open", counting_open, raising=False)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    first = artifacts.sha256_file(weights)
    assert artifacts.sha256_file(weights) == first and len(reads) == 2  # just written: racy, read again

    later = time.time_ns() + 10**10
    monkeypatch.setattr(artifacts.time, "time_ns", lambda: later)  # as if written long ago
    artifacts.sha256_file(weights)
    assert artifacts.sha256_file(weights) == first and len(reads) == 3
    time.sleep(0.05)  # past a tick of the kernel's file clock
    weights.write_bytes(b"b" * 1000)  # same size, same inode
    assert artifacts.sha256_file(weights) == hashlib.sha256(b"b" * 1000).hexdigest() and len(reads) == 4


def test_tag_reused_for_new_content_is_refused_before_commit(local_hub, tmp_path):
    root = _folder(tmp_path)
    push_folder(root, "alice/push-tag", tag="v1")
    before = _commits("alice/push-tag")
    (root / "README.md").write_text("# changed\n")
    with pytest.raises(HubkitError, match="tag 'v1' already exists"):
        push_folder(root, "alice/push-tag", tag="v1")
    assert _commits("alice/push-tag") == before


def test_dataset_repo_on_a_branch_private(local_hub, tmp_path, read_token):
    root = _folder(tmp_path)
    result = push_folder(root, "alice/push-ds", repo_type="dataset", private=True, revision="dev")
    api = HfApi()
    assert result.revision == "dev"
    assert api.repo_info("alice/push-ds", repo_type="dataset").private
    branches = {b.name for b in api.list_repo_refs("alice/push-ds", repo_type="dataset").branches}
    assert branches == {"main", "dev"}
    assert "config.json" not in api.list_repo_files("alice/push-ds", repo_type="dataset")
    with pytest.raises(HubkitError, match="alice/push-ds"):
        push_folder(root, "alice/push-ds", repo_type="dataset", revision="dev2", token=read_token)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", "my token is hf_" + "A1b2C3d4" * 5),
        ("config.py", 'AWS_KEY = "AKIA' + "ABCDEFGHIJKLMNOP" + '"'),
        (".env", "NOTHING=here"),
        ("server.pem", "not even a key"),
        (".git-credentials", "https://user:pass@example.com"),
        (".netrc", "machine x login y password z"),
    ],
)
def test_credentials_refused_and_nothing_created(local_hub, tmp_path, name, content):
    root = _folder(tmp_path)
    (root / "sub" / name).write_text(content)
    repo_id = f"alice/leaky-{abs(hash(name)) % 10**8}"
    with pytest.raises(HubkitError, match=rf"sub/{name}: .*refusing to push {repo_id}"):
        push_folder(root, repo_id)
    assert not HfApi().repo_exists(repo_id)


def test_card_metadata_the_hub_rejects_is_refused_before_the_repo_is_made(local_hub, tmp_path):
    root = _folder(tmp_path)
    (root / "README.md").write_text("---\nlicense:\n- mit\n---\n# hello\n")
    with pytest.raises(
        HubkitError, match=r"README\.md: invalid card metadata \(.*license.* must be a string"
    ):
        push_folder(root, "alice/push-badcard")
    assert not HfApi().repo_exists("alice/push-badcard")


def test_bad_repo_id_is_one_line_before_the_hub(tmp_path):
    with pytest.raises(HubkitError, match=r"^alice/a\.\.b: not a valid repo id"):
        push_folder(_folder(tmp_path), "alice/a..b", endpoint="http://127.0.0.1:9")


def test_secret_split_across_read_chunks_is_found(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    token = b"hf_" + b"Z" * 34
    data = bytearray(b"\0" * (3 << 20))
    at = (1 << 20) - 10  # straddles the first 1 MiB boundary
    data[at : at + len(token)] = token
    (root / "weights.bin").write_bytes(bytes(data))
    assert scan_for_credentials(root) == [("weights.bin", "contains a Hugging Face token")]


def _hubkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_push_twice_and_refusal(local_hub, tmp_path):
    root = _folder(tmp_path)
    first = _hubkit("push", str(root), "alice/cli-push", "--tag", "v0.1.0")
    assert first.returncode == 0, first.stderr
    assert "Pushed 4 file(s)" in first.stdout and "Tagged v0.1.0" in first.stdout
    second = _hubkit("push", str(root), "alice/cli-push", "--tag", "v0.1.0")
    assert second.returncode == 0, second.stderr
    assert "Up to date, no commit made" in second.stdout

    (root / "secret.txt").write_text("hf_" + "x" * 34)
    refused = _hubkit("push", str(root), "alice/cli-push-2")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: {root / 'secret.txt'}: contains a Hugging Face token; refusing to push alice/cli-push-2"
    ]
    assert not HfApi().repo_exists("alice/cli-push-2")


def test_cli_errors_name_the_folder_and_the_endpoint(tmp_path):
    missing = _hubkit("push", str(tmp_path / "nope"), "alice/x")
    assert (
        missing.returncode == 1 and missing.stderr.strip() == f"Error: {tmp_path / 'nope'}: folder not found"
    )
    (tmp_path / "a.txt").write_text("a")
    down = _hubkit("push", str(tmp_path), "alice/x", "--endpoint", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert down.stderr.strip().startswith("Error: alice/x: cannot reach the Hub")
    assert len(down.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("endpoint", "xet_disabled"),
    [("http://127.0.0.1:8080", True), ("http://localhost:1", True), ("https://huggingface.co", False)],
)
def test_xet_is_disabled_only_for_local_endpoints(endpoint, xet_disabled):
    code = (
        f"from hubkit.endpoint import use_endpoint; use_endpoint({endpoint!r});"
        "from huggingface_hub import constants; print(constants.ENDPOINT, constants.HF_HUB_DISABLE_XET)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_XET", "HF_ENDPOINT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [endpoint, str(xet_disabled)]


def _failing_commits(times: int) -> Callable[[str, str], bool]:
    left = [times]

    def fail(method: str, path: str) -> bool:
        if method == "POST" and "/commit/" in path and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return fail


def test_server_errors_are_retried(local_hub, tmp_path):
    root = _folder(tmp_path)
    with FaultyProxy(local_hub.endpoint, _failing_commits(2)) as proxy:
        result = push_folder(root, "alice/push-retry", endpoint=proxy.endpoint)
    assert len(proxy.failures) == 2
    assert result.created_commit
    assert os.environ["HF_ENDPOINT"] == local_hub.endpoint  # an explicit endpoint is not made global
    assert len(_commits("alice/push-retry")) == 2  # the initial commit + ours, made once


def test_persistent_server_errors_leave_the_repo_untouched(local_hub, tmp_path):
    root = _folder(tmp_path)
    first = push_folder(root, "alice/push-500")
    (root / "config.json").write_text('{"a": 3}\n')
    with FaultyProxy(local_hub.endpoint, _failing_commits(100)) as proxy:
        with pytest.raises(HubkitError, match=r"alice/push-500: the Hub refused the request \(HTTP 500\)"):
            push_folder(root, "alice/push-500", endpoint=proxy.endpoint, retries=2)
    assert len(proxy.failures) == 3
    assert _commits("alice/push-500")[0] == first.commit
