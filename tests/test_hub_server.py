"""The local Hub against the stock clients, over real HTTP on 127.0.0.1, with no mocks.

huggingface_hub, datasets, transformers and peft run unmodified against the session Hub that
conftest.py starts (writer alice, reader bob; HF_TOKEN is alice's). The crash tests run the
server from the CLI in a subprocess and SIGKILL it in the middle of uploads and commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_helpers import HubProcess, commit_body
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from hubkit.cli import cli
from hubkit.errors import HubkitError
from hubkit.hub import LocalHub, Token


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of a plain urllib request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@pytest.fixture(scope="module")
def api(local_hub) -> HfApi:
    return HfApi(endpoint=local_hub.endpoint)


@pytest.fixture(scope="module")
def model_repo(api, tmp_path_factory) -> dict:
    """alice/files: small text files, a nested folder, an LFS-by-pattern and an LFS-by-content file."""
    folder = tmp_path_factory.mktemp("upload")
    files = {
        "README.md": b"---\nlicense: mit\ntags: [tiny]\n---\n# Files\n",
        "config.json": b'{"hidden_size": 32}\n',
        "nested/deeper/notes.txt": b"nested notes\n",
        "model.safetensors": os.urandom(200_000),
        "blob.dat": bytes(range(256)) * 64,  # binary content: LFS although *.dat is no LFS pattern
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    api.create_repo("alice/files", exist_ok=True)
    commit = api.upload_folder(folder_path=folder, repo_id="alice/files", commit_message="add files")
    return {"files": files, "commit": commit.oid}


def test_token_parse_cli_and_light_import(tmp_path):
    assert Token.parse("carol:secret:read") == Token("carol", "secret", "read")
    for bad in ("carol:secret", "carol:secret:admin", ":secret:read", "carol::write"):
        with pytest.raises(ValueError, match="carol|secret|invalid"):
            Token.parse(bad)
    probe = "import sys, hubkit.hub; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert not {"huggingface_hub", "datasets", "transformers", "torch", "peft"} & set(eval(loaded))
    runner = CliRunner()
    result = runner.invoke(cli, ["hub", "serve", "--root", str(tmp_path), "--token", "carol:s3cret:owner"])
    assert result.exit_code == 2 and "--token" in result.output and "owner" in result.output
    assert "HF_ENDPOINT" in runner.invoke(cli, ["hub", "serve", "--help"]).output


def test_whoami_and_create_repos(api, read_token):
    me = api.whoami()
    assert me["name"] == "alice" and me["type"] == "user" and me["auth"]["accessToken"]["role"] == "write"
    assert api.whoami(token=read_token)["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as err:
        api.whoami(token="hf_not_a_token")
    assert err.value.response.status_code == 401

    url = api.create_repo("alice/created")
    assert url.repo_id == "alice/created" and url.repo_type == "model"
    assert api.create_repo("alice/created", exist_ok=True).repo_id == "alice/created"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("alice/created")
    assert err.value.response.status_code == 409
    assert api.create_repo("plain-name", repo_type="dataset").repo_id == "alice/plain-name"
    assert api.repo_exists("alice/plain-name", repo_type="dataset")
    assert not api.repo_exists("alice/plain-name")  # a dataset, not a model
    info = api.dataset_info("alice/plain-name", files_metadata=True)
    gitattributes = info.siblings[0]
    assert gitattributes.rfilename == ".gitattributes" and gitattributes.lfs is None
    api.delete_repo("alice/plain-name", repo_type="dataset")
    assert not api.repo_exists("alice/plain-name", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo("alice/plain-name", repo_type="dataset")


def test_upload_and_download(api, model_repo, tmp_path):
    files = model_repo["files"]
    for name, data in files.items():
        assert Path(hf_hub_download("alice/files", name)).read_bytes() == data
    snapshot = Path(snapshot_download("alice/files", cache_dir=tmp_path / "cache"))
    assert {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()} == {
        *files,
        ".gitattributes",
    }

    tree = {e.path: e for e in api.list_repo_tree("alice/files", recursive=True)}
    assert isinstance(tree["nested"], RepoFolder) and isinstance(tree["nested/deeper"], RepoFolder)
    assert tree["config.json"].lfs is None and tree["config.json"].blob_id == _git_blob_oid(
        files["config.json"]
    )
    for lfs_name in ("model.safetensors", "blob.dat"):
        assert tree[lfs_name].lfs.sha256 == hashlib.sha256(files[lfs_name]).hexdigest()
        assert tree[lfs_name].size == len(files[lfs_name])
    top = [e.path for e in api.list_repo_tree("alice/files")]
    assert "nested" in top and "nested/deeper/notes.txt" not in top
    assert [e.path for e in api.list_repo_tree("alice/files", "nested", recursive=True)] == [
        "nested/deeper",
        "nested/deeper/notes.txt",
    ]

    expanded = {e.path: e for e in api.list_repo_tree("alice/files", recursive=True, expand=True)}
    assert expanded.keys() == tree.keys()
    assert all(
        e.last_commit.oid == model_repo["commit"] for p, e in expanded.items() if p != ".gitattributes"
    )
    assert expanded[".gitattributes"].last_commit.title == "initial commit"
    infos = api.get_paths_info("alice/files", ["config.json", "nested", "missing.txt"], expand=True)
    assert [type(i) for i in infos] == [RepoFile, RepoFolder]
    assert all(i.last_commit.oid == model_repo["commit"] for i in infos)

    regular = get_hf_file_metadata(hf_hub_url("alice/files", "config.json"))
    lfs = get_hf_file_metadata(hf_hub_url("alice/files", "model.safetensors"))
    assert regular.etag == _git_blob_oid(files["config.json"]) and regular.commit_hash == model_repo["commit"]
    assert lfs.etag == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert lfs.size == len(files["model.safetensors"])

    info = api.model_info("alice/files")
    assert info.sha == model_repo["commit"] and info.card_data["license"] == "mit" and "tiny" in info.tags
    assert api.file_exists("alice/files", "nested/deeper/notes.txt")
    assert not api.file_exists("alice/files", "nested/missing.txt")


def test_reupload_unchanged_makes_no_commit(api, model_repo):
    head = api.model_info("alice/files").sha
    commit = api.upload_file(
        path_or_fileobj=model_repo["files"]["model.safetensors"],
        path_in_repo="model.safetensors",
        repo_id="alice/files",
    )
    assert commit.oid == head


def test_range_requests(local_hub, model_repo):
    data = model_repo["files"]["model.safetensors"]
    url = hf_hub_url("alice/files", "model.safetensors")
    status, headers, body = _http("GET", url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}" and headers["Accept-Ranges"] == "bytes"
    status, _, body = _http("GET", url, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    assert _http("GET", url, headers={"Range": f"bytes={len(data)}-"})[0] == 416
    with HfFileSystem().open("alice/files/model.safetensors", "rb", block_size=4096) as f:
        f.seek(150_000)
        assert f.read(5000) == data[150_000:155_000]


def test_missing_entries(api, model_repo):
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("alice/files", "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/files", "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree("alice/files", revision="f" * 40))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/no-such-repo", "config.json")
    assert not api.revision_exists("alice/files", "no-such-branch")
    assert not api.repo_exists("alice/no-such-repo")
    status, headers, body = _http("GET", hf_hub_url("alice/files", "nope.txt"))
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and "error" in json.loads(body)
    assert headers["X-Repo-Commit"] == model_repo["commit"]


def test_branches_tags_and_pull_requests(api, tmp_path):
    repo = "alice/revisions"
    api.create_repo(repo)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo).oid
    api.create_branch(repo, branch="dev")
    api.create_branch(repo, branch="dev", exist_ok=True)
    dev = api.upload_file(path_or_fileobj=b"dev", path_in_repo="f.txt", repo_id=repo, revision="dev").oid
    api.create_tag(repo, tag="v1.0", revision="dev")
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="f.txt", repo_id=repo, create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_num == 1

    def read(revision: str) -> bytes:
        return Path(hf_hub_download(repo, "f.txt", revision=revision, cache_dir=tmp_path)).read_bytes()

    assert (read("main"), read("dev"), read("v1.0"), read(first), read("refs/pr/1")) == (
        b"v1",
        b"dev",
        b"dev",
        b"v1",
        b"pr",
    )
    assert api.model_info(repo, revision="refs/pr/1").sha == pr.oid
    assert api.revision_exists(repo, "v1.0") and api.revision_exists(repo, dev)

    refs = api.list_repo_refs(repo, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": first, "dev": dev}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", dev)]
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", pr.oid)]
    assert [c.commit_id for c in api.list_repo_commits(repo, revision="dev")][:2] == [dev, first]
    assert [c.title for c in api.list_repo_commits(repo)] == [
        "Upload f.txt with huggingface_hub",
        "initial commit",
    ]

    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo, tag="v1.0")
    assert err.value.response.status_code == 409
    api.delete_tag(repo, tag="v1.0")
    api.delete_branch(repo, branch="dev")
    assert not api.revision_exists(repo, "dev") and not api.revision_exists(repo, "v1.0")


def test_delete_and_stale_parent(api, tmp_path):
    repo = "alice/deletes"
    api.create_repo(repo)
    api.upload_folder(
        repo_id=repo,
        folder_path=_tree(
            {"keep.txt": b"k", "drop.txt": b"d", "dir/a.txt": b"a", "dir/b.txt": b"b"},
            tmp_path,
        ),
    )
    stale = api.model_info(repo).sha
    api.delete_file("drop.txt", repo)
    api.delete_folder("dir", repo)
    assert sorted(f.path for f in api.list_repo_tree(repo, recursive=True)) == [".gitattributes", "keep.txt"]
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            repo,
            [CommitOperationAdd("late.txt", b"late")],
            commit_message="stale",
            parent_commit=stale,
        )
    assert err.value.response.status_code == 412
    with pytest.raises(EntryNotFoundError):
        api.delete_file("drop.txt", repo)
    head = api.model_info(repo).sha
    assert api.create_commit(
        repo, [CommitOperationAdd("ok.txt", b"ok")], commit_message="fresh", parent_commit=head
    ).oid


def _tree(files: dict[str, bytes], root: Path) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_concurrent_commits_are_serialised(api):
    repo = "alice/concurrent"
    api.create_repo(repo)
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"f{i}.txt", repo_id=repo)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(api.list_repo_commits(repo)) == 7
    assert {f.path for f in api.list_repo_tree(repo)} == {".gitattributes", *(f"f{i}.txt" for i in range(6))}


def test_private_repo_and_roles(api, read_token):
    repo = "hubkit/secret"  # the organisation of alice (writer) and bob (reader)
    api.create_repo(repo, private=True)
    api.upload_file(path_or_fileobj=b"classified", path_in_repo="s.txt", repo_id=repo)
    anonymous = HfApi(endpoint=api.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo, "s.txt", token=False)
    assert repo not in [m.id for m in anonymous.list_models(author="hubkit")]
    assert repo in [m.id for m in api.list_models(author="hubkit")]

    reader = HfApi(endpoint=api.endpoint, token=read_token)
    assert reader.model_info(repo).private
    assert Path(hf_hub_download(repo, "s.txt", token=read_token)).read_bytes() == b"classified"
    with pytest.raises(HfHubHTTPError) as err:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        reader.create_repo("bob/mine")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:  # anonymous writes are refused too (401, as on the Hub)
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/files")
    assert err.value.response.status_code == 401

    api.update_repo_settings(repo, private=False)
    assert anonymous.model_info(repo).private is False


def test_gated_repo(api):
    repo = "alice/gated"
    api.create_repo(repo)
    api.upload_file(path_or_fileobj=b"g", path_in_repo="g.txt", repo_id=repo)
    api.update_repo_settings(repo, gated="auto")
    assert api.model_info(repo).gated == "auto"
    status, headers, _ = _http("GET", hf_hub_url(repo, "g.txt"))
    assert status == 401 and headers["X-Error-Code"] == "GatedRepo"
    assert Path(hf_hub_download(repo, "g.txt")).read_bytes() == b"g"


def test_validate_yaml(api):
    api.create_repo("alice/cards", exist_ok=True)
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(
            path_or_fileobj=b"---\ntags: [unclosed\n---\n", path_in_repo="README.md", repo_id="alice/cards"
        )
    with pytest.raises(ValueError, match="license"):
        api.upload_file(
            path_or_fileobj=b"---\nlicense: 42\n---\n", path_in_repo="README.md", repo_id="alice/cards"
        )
    ok = b"---\nlicense: apache-2.0\nlanguage: [en]\n---\n# ok\n"
    assert api.upload_file(path_or_fileobj=ok, path_in_repo="README.md", repo_id="alice/cards").oid


def test_tree_pagination_and_lfs_protocol(local_hub, api, model_repo, write_token):
    base = f"{local_hub.endpoint}/api/models/alice/files/tree/main?recursive=true&limit=2"
    url, pages, paths = base, 0, []
    while url:
        status, headers, body = _http("GET", url)
        assert status == 200
        paths += [e["path"] for e in json.loads(body)]
        pages += 1
        link = headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert pages > 2 and paths == [e.path for e in api.list_repo_tree("alice/files", recursive=True)]

    auth = {"Authorization": f"Bearer {write_token}", "Content-Type": "application/json"}
    paths_info = f"{local_hub.endpoint}/api/models/alice/files/paths-info/main"
    status, _, body = _http(
        "POST", paths_info, json.dumps({"paths": ["nested", "config.json"]}).encode(), auth
    )
    assert status == 200 and [e["type"] for e in json.loads(body)] == ["directory", "file"]
    batch = f"{local_hub.endpoint}/alice/files.git/info/lfs/objects/batch"
    stored = model_repo["files"]["model.safetensors"]
    fresh = os.urandom(1000)
    objects = [{"oid": hashlib.sha256(d).hexdigest(), "size": len(d)} for d in (stored, fresh)]
    status, _, body = _http(
        "POST", batch, json.dumps({"operation": "upload", "objects": objects}).encode(), auth
    )
    known, new = json.loads(body)["objects"]
    assert status == 200 and "actions" not in known
    href = new["actions"]["upload"]["href"]
    tampered = os.urandom(1000)  # right size, wrong content: refused, nothing kept
    status, _, body = _http("PUT", href, tampered)
    assert status == 400 and "sha256" in json.loads(body)["error"]
    assert not list((Path(local_hub.root) / "tmp").glob("*.part"))
    assert _http("PUT", href.replace("sig=", "sig=0"), fresh)[0] == 403
    assert _http("PUT", href, fresh)[0] == 200
    status, _, body = _http(
        "POST", batch, json.dumps({"operation": "upload", "objects": objects[1:]}).encode(), auth
    )
    assert "actions" not in json.loads(body)["objects"][0]
    status, _, _ = _http("POST", batch, json.dumps({"operation": "upload", "objects": objects}).encode())
    assert status == 401


def test_open_hub_without_tokens(tmp_path):
    with LocalHub(tmp_path / "open") as hub:
        anonymous = HfApi(endpoint=hub.endpoint, token=False)
        assert HfApi(endpoint=hub.endpoint, token="anything").whoami()["name"] == "hubkit"
        anonymous.create_repo("hubkit/open")
        anonymous.upload_file(path_or_fileobj=b"hi", path_in_repo="hi.txt", repo_id="hubkit/open")
        assert [f.path for f in anonymous.list_repo_tree("hubkit/open")] == [".gitattributes", "hi.txt"]
        with pytest.raises(HubkitError, match="already served"):
            LocalHub(tmp_path / "open").start()


def test_datasets_roundtrip(local_hub, tmp_path):
    from datasets import Dataset, DatasetDict, load_dataset

    data = DatasetDict(
        train=Dataset.from_dict({"text": [f"row {i}" for i in range(20)], "label": list(range(20))}),
        test=Dataset.from_dict({"text": ["held out", "another"], "label": [100, 101]}),
    )
    data.push_to_hub("alice/rows")
    loaded = load_dataset("alice/rows", cache_dir=str(tmp_path / "datasets-cache"))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].to_dict() == data["train"].to_dict()
    assert loaded["test"].to_dict() == data["test"].to_dict()
    single = Dataset.from_dict({"x": [1, 2, 3]})
    single.push_to_hub("alice/single", split="train")
    assert load_dataset("alice/single", split="train", cache_dir=str(tmp_path / "c2"))["x"] == [1, 2, 3]


def test_transformers_and_peft_roundtrip(local_hub):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    inputs = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        base_logits = model(inputs).logits
    model.push_to_hub("alice/tiny-llama")

    lora = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).eval()
    with torch.no_grad():
        lora_logits = lora(inputs).logits
    assert not torch.allclose(lora_logits, base_logits)
    lora.push_to_hub("alice/tiny-lora")

    base = AutoModelForCausalLM.from_pretrained("alice/tiny-llama").eval()
    with torch.no_grad():
        assert torch.equal(base(inputs).logits, base_logits)
        adapted = PeftModel.from_pretrained(base, "alice/tiny-lora").eval()
        assert torch.equal(adapted(inputs).logits, lora_logits)


# crash safety ---------------------------------------------------------------------------------------


def _wait_for(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _start_request(
    port: int, method: str, path: str, length: int, headers: dict | None = None
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def test_commits_survive_sigkill(tmp_path):
    root = tmp_path / "crash-hub"
    server = HubProcess(root).start()
    try:
        api = HfApi(endpoint=server.endpoint, token=False)
        repo = "hubkit/crash"
        api.create_repo(repo)
        small, weights = b"stable\n", os.urandom(1_000_000)
        api.upload_file(path_or_fileobj=small, path_in_repo="a.txt", repo_id=repo)
        first = api.upload_file(path_or_fileobj=weights, path_in_repo="w.bin", repo_id=repo).oid

        def assert_intact() -> None:
            assert api.model_info(repo).sha == first
            assert sorted(f.path for f in api.list_repo_tree(repo)) == [".gitattributes", "a.txt", "w.bin"]
            assert api.hf_hub_download(repo, "a.txt", cache_dir=tmp_path / "c", force_download=True)
            for name, data in (("a.txt", small), ("w.bin", weights)):
                url = hf_hub_url(repo, name, endpoint=server.endpoint)
                assert _http("GET", url)[2] == data
            assert not list((root / "tmp").iterdir())  # partial uploads were swept on start

        big = os.urandom(8 * 1024 * 1024)
        big_sha = hashlib.sha256(big).hexdigest()
        batch_url = f"{server.endpoint}/{repo}.git/info/lfs/objects/batch"
        payload = json.dumps(
            {"operation": "upload", "objects": [{"oid": big_sha, "size": len(big)}]}
        ).encode()
        lfs_json = {"Content-Type": "application/vnd.git-lfs+json"}  # as the clients send it

        def batch():
            return _http("POST", batch_url, payload, lfs_json)

        # 1. SIGKILL in the middle of a large LFS upload, once the partial object is on disk
        href = json.loads(batch()[2])["objects"][0]["actions"]["upload"]["href"]
        path = href[len(server.endpoint) :]
        sock = _start_request(server.port, "PUT", path, len(big))
        sock.sendall(big[: len(big) // 2])
        _wait_for(
            lambda: any(p.stat().st_size >= 1024 * 1024 for p in (root / "tmp").glob("*.part")),
            "a partial upload",
        )
        server.kill()
        sock.close()
        assert not (root / "objects" / big_sha[:2] / big_sha[2:]).exists()
        server.start()
        assert_intact()

        # 2. SIGKILL in the middle of a big multi-file commit, while its files are being stored
        contents = [os.urandom(32 * 1024).hex().encode() for _ in range(64)]
        body = commit_body("half a commit", {f"many/{i}.txt": c for i, c in enumerate(contents)})
        sock = _start_request(
            server.port,
            "POST",
            f"/api/models/{repo}/commit/main",
            len(body),
            {"Content-Type": "application/x-ndjson"},
        )
        sock.sendall(body[: len(body) // 2])
        tenth = hashlib.sha256(contents[10]).hexdigest()
        _wait_for(
            lambda: (root / "objects" / tenth[:2] / tenth[2:]).exists(), "the commit's files to be stored"
        )
        server.kill()
        sock.close()
        server.start()
        assert_intact()

        # 3. SIGKILL after the LFS upload completed but before the commit that uses it
        href = json.loads(batch()[2])["objects"][0]["actions"]["upload"]["href"]
        assert _http("PUT", href, big)[0] == 200
        server.kill()
        server.start()
        assert_intact()
        assert "actions" not in json.loads(batch()[2])["objects"][0]  # already stored

        # the interrupted work, re-run, goes through
        second = api.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id=repo).oid
        ops = [CommitOperationAdd(f"many/{i}.txt", c) for i, c in enumerate(contents)]
        third = api.create_commit(repo, ops, commit_message="whole commit", parent_commit=second).oid
        assert [c.commit_id for c in api.list_repo_commits(repo)][:3] == [third, second, first]
        assert _http("GET", hf_hub_url(repo, "big.bin", endpoint=server.endpoint))[2] == big
        assert len([f for f in api.list_repo_tree(repo, "many")]) == 64
    finally:
        server.kill()
