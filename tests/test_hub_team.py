"""The local Hub shared by a team: namespaces, bounded work, concurrency and strict input.

Each probe of issue #21 runs as a hostile user of a shared server would, over real HTTP on
127.0.0.1 against a server with several users (alice, bob, carol write; dave reads; alice and
dave form the organisation 'lab').
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_helpers import commit_body
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from test_hub_server import _http

from hubkit.cli import cli
from hubkit.hub import LocalHub, Token

TOKENS = {
    "alice": "hf_alice_write_0000000000000000000000",
    "bob": "hf_bob_write_00000000000000000000000000",
    "carol": "hf_carol_write_0000000000000000000000",
    "dave": "hf_dave_read_00000000000000000000000000",
}


def _auth(user: str, content_type: str = "application/json") -> dict:
    return {"Authorization": f"Bearer {TOKENS[user]}", "Content-Type": content_type}


def _start(root: Path) -> LocalHub:
    tokens = [Token(name, secret, "read" if name == "dave" else "write") for name, secret in TOKENS.items()]
    return LocalHub(root, tokens=tokens, orgs={"lab": ["alice", "dave"]}).start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = _start(tmp_path_factory.mktemp("team-hub"))
    yield server
    server.stop()


def _api(hub: LocalHub, user: str | None) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=TOKENS[user] if user else False)


def test_users_write_only_in_their_namespaces(hub):
    alice, carol, dave = _api(hub, "alice"), _api(hub, "carol"), _api(hub, "dave")
    alice.create_repo("alice/secret-model", private=True)
    alice.upload_file(path_or_fileobj=b"weights", path_in_repo="w.txt", repo_id="alice/secret-model")
    alice.create_repo("alice/public-model")
    alice.create_repo("lab/shared", private=True)

    # carol neither sees alice's private repo nor can touch it: 404, as if it did not exist
    for call in (
        lambda: carol.model_info("alice/secret-model"),
        lambda: carol.delete_repo("alice/secret-model"),
        lambda: carol.update_repo_settings("alice/secret-model", private=False),
        lambda: hf_hub_download("alice/secret-model", "w.txt", token=TOKENS["carol"], endpoint=hub.endpoint),
    ):
        with pytest.raises(RepositoryNotFoundError):
            call()
    assert "alice/secret-model" not in [m.id for m in carol.list_models(author="alice")]
    # a public repo of alice: carol reads it, but settings, deletes and commits are 403
    assert carol.model_info("alice/public-model").id == "alice/public-model"
    for call in (
        lambda: carol.update_repo_settings("alice/public-model", private=True),
        lambda: carol.delete_repo("alice/public-model"),
        lambda: carol.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/public-model"),
        lambda: carol.create_branch("alice/public-model", branch="evil"),
        lambda: carol.create_repo("alice/squatted"),
        lambda: carol.create_repo("lab/squatted"),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert err.value.response.status_code == 403
        assert "rights" in err.value.response.headers["X-Error-Message"]
    assert not alice.model_info("alice/public-model").private
    assert not alice.repo_exists("alice/squatted") and not alice.repo_exists("lab/squatted")
    # a raw commit into a foreign namespace is refused before anything is stored
    status, _, _ = _http(
        "POST",
        f"{hub.endpoint}/api/models/alice/public-model/commit/main",
        commit_body("evil", {"evil.txt": b"carol was here"}),
        _auth("carol", "application/x-ndjson"),
    )
    assert status == 403
    assert "evil.txt" not in alice.list_repo_files("alice/public-model")

    # organisation members: dave (read token) reads lab's private repo, cannot write it
    assert dave.model_info("lab/shared").private
    assert [o["name"] for o in dave.whoami()["orgs"]] == ["lab"]
    with pytest.raises(HfHubHTTPError) as err:
        dave.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="lab/shared")
    assert err.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError):
        carol.model_info("lab/shared")
    carol.create_repo("carol/own")  # her own namespace is hers
    alice.delete_repo("alice/secret-model")


def test_tokens_from_a_file_or_the_environment(tmp_path):
    secrets_file = tmp_path / "tokens.txt"
    secrets_file.write_text(f"# team\nalice:{TOKENS['alice']}:write\n\ncarol:{TOKENS['carol']}:read\n")
    runner = CliRunner()
    bad = tmp_path / "bad.txt"
    bad.write_text("alice:hf_secret_value\n")
    result = runner.invoke(cli, ["hub", "serve", "--root", str(tmp_path / "r"), "--token-file", str(bad)])
    assert result.exit_code == 2 and "line 1" in result.output and "hf_secret_value" not in result.output
    result = runner.invoke(cli, ["hub", "serve", "--root", str(tmp_path / "r"), "--org", "lab"])
    assert result.exit_code == 2 and "ORG:user1,user2" in result.output
    result = runner.invoke(
        cli,
        ["hub", "serve", "--root", str(tmp_path / "r"), "--org", "alice:bob"],
        env={"HUBKIT_HUB_TOKENS": f"alice:{TOKENS['alice']}:write"},
    )
    assert result.exit_code == 2 and "both a user and an organisation" in result.output
    from hubkit.hub.auth import load_token_file

    assert [(t.name, t.role) for t in load_token_file(secrets_file)] == [
        ("alice", "write"),
        ("carol", "read"),
    ]


def _laughs(levels: int) -> bytes:
    """A README whose YAML aliases expand 10x per level: 447 bytes make 135 MB of JSON at 6 levels."""
    lines = ["---", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return ("\n".join([*lines, "---", "# card"]) + "\n").encode()


def test_cards_cost_bounded_work(hub):
    from hubkit.hub.routes import metadata

    alice = _api(hub, "alice")
    alice.create_repo("alice/laughs")
    status, _, _ = _http(
        "POST",
        f"{hub.endpoint}/api/models/alice/laughs/commit/main",
        commit_body("bomb", {"README.md": _laughs(6)}),
        _auth("alice", "application/x-ndjson"),
    )
    assert status == 200
    status, _, body = _http("GET", f"{hub.endpoint}/api/models/alice/laughs")
    assert status == 200 and len(body) < 10_000 and "cardData" not in json.loads(body)
    # validate-yaml says why, and refuses bodies over its cap without reading them whole
    url = f"{hub.endpoint}/api/validate-yaml"
    payload = json.dumps({"content": _laughs(6).decode(), "repoType": "model"}).encode()
    status, _, body = _http("POST", url, payload, _auth("alice"))
    assert status == 400 and "aliases" in json.loads(body)["errors"][0]["message"]
    recursive = json.dumps({"content": "---\na: &a [*a]\n---\n"}).encode()
    status, _, body = _http("POST", url, recursive, _auth("alice"))
    assert status == 400 and "itself" in body.decode()
    huge = json.dumps({"content": "---\nx: " + "y" * (300 * 1024) + "\n---\n"}).encode()
    status, _, body = _http("POST", url, huge, _auth("alice"))
    assert status == 400 and "larger than" in body.decode()
    status, _, _ = _http("POST", url, b'{"content": "' + b"z" * (3 * 1024 * 1024) + b'"}', _auth("alice"))
    assert status == 413
    # a card with a date is served (as a string), and parsed once per content, not per request
    card = b"---\nlicense: mit\ndate: 2024-01-02\ntags: [a]\n---\n# c\n"
    alice.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/laughs")
    before = metadata._card_metadata.cache_info()
    for _ in range(3):
        info = alice.model_info("alice/laughs")
    after = metadata._card_metadata.cache_info()
    assert info.card_data["date"] == "2024-01-02" and info.tags == ["a"]
    assert after.misses - before.misses == 1 and after.hits - before.hits == 2


def _commit(hub: LocalHub, repo: str, summary: str, files: dict[str, bytes], user: str = "alice", **header):
    return _http(
        "POST",
        f"{hub.endpoint}/api/models/{repo}/commit/main",
        commit_body(summary, files, **header),
        _auth(user, "application/x-ndjson"),
    )


def test_stress_commits_settings_and_deletes_stay_consistent(tmp_path):
    """8 clients x 50 commits to one repo while another is made private/gated, deleted and re-made."""
    root = tmp_path / "stress"
    hub = _start(root)
    acknowledged: list[tuple[str, str]] = []  # (commit id, file it added)
    last_settings: dict[str, object] = {}
    errors: list[BaseException] = []
    deletes = {"acked": 0}

    def run(work):
        def guarded(*args):
            try:
                work(*args)
            except BaseException as exc:  # surfaced by the assertions below
                errors.append(exc)

        return guarded

    @run
    def committer(client: int) -> None:
        for i in range(50):
            status, _, body = _commit(hub, "alice/busy", f"c{client}-{i}", {f"c{client}/{i}.txt": b"%d" % i})
            assert status == 200, body
            acknowledged.append((json.loads(body)["commitOid"], f"c{client}/{i}.txt"))

    @run
    def settings(key: str, values: list) -> None:
        for i in range(40):
            value = values[i % 2]
            url = f"{hub.endpoint}/api/models/alice/settled/settings"
            status, _, body = _http("PUT", url, json.dumps({key: value}).encode(), _auth("alice"))
            assert status == 200, body
            last_settings[key] = value

    @run
    def deleter() -> None:
        for _ in range(15):
            _http("POST", f"{hub.endpoint}/api/repos/create", b'{"name": "doomed"}', _auth("alice"))
            payload = b'{"name": "doomed", "type": "model"}'
            status, _, _ = _http("DELETE", f"{hub.endpoint}/api/repos/delete", payload, _auth("alice"))
            deletes["acked"] += status == 200

    @run
    def doomed_committer() -> None:
        for i in range(30):
            status, _, body = _commit(hub, "alice/doomed", f"d{i}", {f"d{i}.txt": b"d"})
            assert status in (200, 404), body

    try:
        api = _api(hub, "alice")
        api.create_repo("alice/busy")
        api.create_repo("alice/settled")
        threads = [threading.Thread(target=committer, args=(c,)) for c in range(8)]
        threads += [
            threading.Thread(target=settings, args=("private", [True, False])),
            threading.Thread(target=settings, args=("gated", ["auto", False])),
            threading.Thread(target=deleter),
            threading.Thread(target=doomed_committer),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert deletes["acked"] == 15
    finally:
        hub.stop()

    hub = _start(root)  # a restart sees the same, consistent state
    try:
        api = _api(hub, "alice")
        history = [c.commit_id for c in api.list_repo_commits("alice/busy")]
        assert len(history) == 401 and {c for c, _ in acknowledged} <= set(history)
        files = set(api.list_repo_files("alice/busy"))
        assert {f for _, f in acknowledged} <= files and len(acknowledged) == 400
        info = api.model_info("alice/settled")
        assert (info.private, info.gated) == (last_settings["private"], last_settings["gated"])
        assert not api.repo_exists("alice/doomed")
        api.create_repo("alice/doomed")  # nothing left behind blocks re-creating it
        assert api.list_repo_files("alice/doomed") == [".gitattributes"]
    finally:
        hub.stop()


def test_startup_removes_leftover_repo_folders(tmp_path):
    root = tmp_path / "leftovers"
    hub = _start(root)
    hub.stop()
    leftover = root / "repos" / "model" / "alice" / "ghost" / "commits"
    leftover.mkdir(parents=True)  # what a commit racing a delete used to leave behind
    (leftover / f"{'0' * 40}.json").write_text("{}")
    hub = _start(root)
    try:
        assert not leftover.parent.exists()
        assert _api(hub, "alice").create_repo("alice/ghost").repo_id == "alice/ghost"
    finally:
        hub.stop()


def _raw(port: int, data: bytes, wait: float = 1.0) -> bytes:
    """Send raw bytes on one connection and return everything the server answers within ``wait``."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_bodies_are_400_with_a_message(hub):
    _api(hub, "alice").create_repo("alice/strict")
    api = f"{hub.endpoint}/api/models/alice/strict"
    cases = [
        ("POST", f"{hub.endpoint}/api/repos/create", b"[1, 2]", "JSON object"),
        ("POST", f"{hub.endpoint}/api/repos/create", b'{"name": 5}', "'name'"),
        ("POST", f"{hub.endpoint}/api/repos/create", b'{"name": "x", "private": "yes"}', "'private'"),
        ("DELETE", f"{hub.endpoint}/api/repos/delete", b'{"name": ["strict"]}', "'name'"),
        ("PUT", f"{api}/settings", b'{"private": "false"}', "'private'"),
        ("PUT", f"{api}/settings", b'{"gated": 0}', "'gated'"),
        ("PUT", f"{api}/settings", b'"private"', "JSON object"),
        ("POST", f"{api}/preupload/main", b'{"files": [1]}', "preupload entry"),
        ("POST", f"{api}/preupload/main", b'{"files": [{"path": "a", "size": "9"}]}', "'size'"),
        ("POST", f"{api}/preupload/main", b'{"files": [{"path": "a", "size": 1, "sample": "!!"}]}', "base64"),
        ("POST", f"{api}/paths-info/main", b'["a"]', "JSON object"),
        ("POST", f"{api}/branch/dev", b'{"startingPoint": 5}', "'startingPoint'"),
        ("POST", f"{api}/tag/main", b'{"tag": ["v1"]}', "'tag'"),
        (
            "POST",
            f"{hub.endpoint}/alice/strict.git/info/lfs/objects/batch",
            b'{"operation": "upload", "objects": "x"}',
            "'objects'",
        ),
    ]
    for method, url, body, expected in cases:
        status, headers, answer = _http(method, url, body, _auth("alice"))
        assert status == 400 and expected in json.loads(answer)["error"], (method, url, body, answer)
    status, _, answer = _http(
        "POST",
        f"{hub.endpoint}/alice/strict.git/info/lfs/objects/batch",
        json.dumps({"operation": "upload", "objects": [{"oid": "z" * 64, "size": 3}]}).encode(),
        _auth("alice"),
    )
    assert status == 200 and json.loads(answer)["objects"][0]["error"]["code"] == 422
    assert _api(hub, "alice").repo_exists("alice/strict")


def test_commit_payloads_are_checked_strictly(hub):
    api = _api(hub, "alice")
    api.create_repo("alice/exact")
    head = api.model_info("alice/exact").sha
    bad_base64 = b'{"key": "header", "value": {"summary": "s"}}\n{"key": "file", "value": {"path": "a.txt", '
    bad_base64 += b'"content": "aGVsbG8=!!", "encoding": "base64"}}\n'
    lfs = {"path": "w.bin", "algo": "sha256", "oid": "Z" * 64, "size": 1}
    bad_oid = commit_body("s", {}) + json.dumps({"key": "lfsFile", "value": lfs}).encode() + b"\n"
    for payload, expected in (
        (bad_base64, "base64"),
        (commit_body("s", {"a.txt": b"a"}, parentCommit=""), "parentCommit"),
        (commit_body("s", {"a.txt": b"a"}, parentCommit=None, description=7), "'description'"),
        (commit_body(["not", "text"], {"a.txt": b"a"}), "'summary'"),  # type: ignore[arg-type]
        (bad_oid, "64 hex"),
    ):
        status, _, answer = _http(
            "POST",
            f"{hub.endpoint}/api/models/alice/exact/commit/main",
            payload,
            _auth("alice", "application/x-ndjson"),
        )
        assert status == 400 and expected in json.loads(answer)["error"], answer
    assert api.model_info("alice/exact").sha == head  # nothing was committed
    status, _, answer = _commit(hub, "alice/exact", "s", {"a.txt": b"a"}, parentCommit=head[:7])
    assert status == 200
    status, _, answer = _commit(hub, "alice/exact", "s", {"b.txt": b"b"}, parentCommit=head[:7])
    assert status == 412  # stale: main moved on since head
    status, _, answer = _commit(hub, "alice/exact", "s", {"b.txt": b"b"}, parentCommit="0" * 40)
    assert status == 412
    status, _, answer = _http(
        "POST",
        f"{hub.endpoint}/api/models/alice/exact/commit/main?create_pr=1",
        commit_body("pr", {"b.txt": b"b"}, parentCommit="0" * 40),
        _auth("alice", "application/x-ndjson"),
    )
    assert status == 404  # a pull request from an unknown commit


def test_no_header_injection_and_no_smuggling_on_get(tmp_path):
    with LocalHub(tmp_path / "open") as hub:
        _http(
            "POST", f"{hub.endpoint}/api/repos/create", b'{"name": "r"}', {"Content-Type": "application/json"}
        )
        host = f"127.0.0.1:{hub.port}"
        injected = "/api/models/hubkit/r/revision/x%0D%0AX-Injected:%20yes"
        answer = _raw(hub.port, f"GET {injected} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = answer.split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 404") and all(b"\r" not in line for line in head.split(b"\r\n"))
        smuggled = f"POST /api/repos/create HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        smuggled += 'Content-Length: 20\r\n\r\n{"name": "smuggled"}'
        request = f"GET /hubkit/r/resolve/main/.gitattributes HTTP/1.1\r\nHost: {host}\r\n"
        request += f"Content-Length: {len(smuggled)}\r\n\r\n"
        answer = _raw(hub.port, (request + smuggled).encode())
        assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200")
        assert not HfApi(endpoint=hub.endpoint).repo_exists("hubkit/smuggled")


def test_open_hub_refuses_foreign_hosts_and_cross_site_posts(tmp_path):
    with LocalHub(tmp_path / "open") as hub:
        create = f"{hub.endpoint}/api/repos/create"
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ):
            status, _, answer = _http("POST", create, b'{"name": "csrf"}', {"Content-Type": content_type})
            assert status == 415 and "application/json" in json.loads(answer)["error"]
        status, _, _ = _http(
            "POST",
            create,
            b'{"name": "csrf"}',
            {"Host": "evil.example:8080", "Content-Type": "application/json"},
        )
        assert status == 403
        assert _http("GET", f"{hub.endpoint}/api/models", headers={"Host": "attacker.example"})[0] == 403
        assert not HfApi(endpoint=hub.endpoint).repo_exists("hubkit/csrf")
        assert _http("POST", create, b'{"name": "ok"}', {"Content-Type": "application/json"})[0] == 200
        assert _http("GET", f"{hub.endpoint}/api/models", headers={"Host": f"localhost:{hub.port}"})[0] == 200


def _lfs_upload(hub: LocalHub, user: str, repo: str, data: bytes, upload: bool = True) -> dict:
    """The LFS batch answer for ``data`` in ``repo``; uploads it when the Hub asks for it."""
    oid = hashlib.sha256(data).hexdigest()
    payload = json.dumps({"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).encode()
    status, _, body = _http("POST", f"{hub.endpoint}/{repo}.git/info/lfs/objects/batch", payload, _auth(user))
    assert status == 200, body
    answer = json.loads(body)["objects"][0]
    if "actions" in answer and upload:
        assert _http("PUT", answer["actions"]["upload"]["href"], data)[0] == 200
    return answer


def _lfs_commit(hub: LocalHub, user: str, repo: str, path: str, data: bytes):
    lfs = {"path": path, "algo": "sha256", "oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    payload = commit_body(f"add {path}", {}) + json.dumps({"key": "lfsFile", "value": lfs}).encode() + b"\n"
    return _http(
        "POST", f"{hub.endpoint}/api/models/{repo}/commit/main", payload, _auth(user, "application/x-ndjson")
    )


def test_blobs_of_other_repos_cannot_be_linked_and_deleted_ones_are_collected(hub):
    alice = _api(hub, "alice")
    alice.create_repo("alice/weights", private=True)
    alice.create_repo("alice/public-copy")
    secret, shared = os.urandom(4096), os.urandom(4096)
    for data, name in ((secret, "secret.bin"), (shared, "shared.bin")):
        assert "actions" in _lfs_upload(hub, "alice", "alice/weights", data)
        assert _lfs_commit(hub, "alice", "alice/weights", name, data)[0] == 200
    # knowing an oid is not enough: carol must upload the content before her commit may use it
    hub_carol = _api(hub, "carol")
    hub_carol.create_repo("carol/thief")
    status, _, body = _lfs_commit(hub, "carol", "carol/thief", "stolen.bin", secret)
    assert status == 400 and "not uploaded" in json.loads(body)["error"]
    assert "actions" in _lfs_upload(hub, "carol", "carol/thief", secret, upload=False)
    # alice's public repo holds `shared` too; deleting the private repo keeps it and drops `secret`
    assert "actions" in _lfs_upload(hub, "alice", "alice/public-copy", shared)
    assert _lfs_commit(hub, "alice", "alice/public-copy", "shared.bin", shared)[0] == 200
    blob = {
        d: Path(hub.root) / "objects" / h[:2] / h[2:]
        for d in (secret, shared)
        for h in [hashlib.sha256(d).hexdigest()]
    }
    alice.delete_repo("alice/weights")
    assert not blob[secret].exists() and blob[shared].exists()
    assert (
        Path(
            hf_hub_download("alice/public-copy", "shared.bin", endpoint=hub.endpoint, token=TOKENS["bob"])
        ).read_bytes()
        == shared
    )
    status, _, _ = _lfs_commit(hub, "carol", "carol/thief", "stolen.bin", secret)
    assert status == 400


def test_a_one_file_commit_writes_only_the_changed_folders(hub):
    alice = _api(hub, "alice")
    alice.create_repo("alice/many")
    files = {f"d{d}/f{f}.txt": b"%d-%d" % (d, f) for d in range(10) for f in range(20)}
    assert _commit(hub, "alice/many", "200 files", files)[0] == 200
    trees = Path(hub.root) / "repos" / "model" / "alice" / "many" / "trees"

    def stored() -> tuple[int, int]:
        objects = [p for p in trees.rglob("*") if p.is_file()]
        return len(objects), sum(p.stat().st_size for p in objects)

    count, size = stored()
    assert count == 12  # the first commit's root, then the new root and its 10 folders
    assert _commit(hub, "alice/many", "one file", {"d7/f3.txt": b"changed"})[0] == 200
    new_count, new_size = stored()
    assert new_count == count + 2 and new_size - size < 10_000  # d7 and the root, not 200 entries
    assert alice.list_repo_tree("alice/many", "d7")
    listing = {f.path for f in alice.list_repo_tree("alice/many", recursive=True)}
    assert listing == {".gitattributes", *files, *(f"d{d}" for d in range(10))}
    assert hf_hub_download("alice/many", "d7/f3.txt", endpoint=hub.endpoint, token=TOKENS["alice"])
    # history pages without reading every commit; a bad cursor is a 400
    status, headers, body = _http("GET", f"{hub.endpoint}/api/models/alice/many/commits/main?limit=1")
    assert (
        status == 200
        and [c["title"] for c in json.loads(body)] == ["one file"]
        and "cursor=1" in headers["Link"]
    )
    assert _http("GET", f"{hub.endpoint}/api/models/alice/many/commits/main?cursor=-1")[0] == 400
    # deleting a folder removes it; emptied folders disappear as in git
    payload = commit_body("rm", {}) + b'{"key": "deletedFolder", "value": {"path": "d1/"}}\n'
    payload += b'{"key": "deletedFile", "value": {"path": "d2/f0.txt"}}\n'
    payload += b'{"key": "deletedFile", "value": {"path": "d3"}}\n'  # a folder: deleted too, as on the Hub
    status, _, _ = _http(
        "POST",
        f"{hub.endpoint}/api/models/alice/many/commit/main",
        payload,
        _auth("alice", "application/x-ndjson"),
    )
    assert status == 200
    top = {f.path for f in alice.list_repo_tree("alice/many")}
    assert "d1" not in top and "d3" not in top and "d2" in top
    assert len(alice.list_repo_files("alice/many")) == 200 - 20 - 1 - 20 + 1


def test_repos_of_an_older_hubkit_are_converted_on_start(tmp_path):
    """A repo as the older storage wrote it (each commit listing every file) reads the same after a start."""
    root = tmp_path / "old-hub"
    content = b"old file\n"
    sha = hashlib.sha256(content).hexdigest()
    (root / "objects" / sha[:2]).mkdir(parents=True)
    (root / "objects" / sha[:2] / sha[2:]).write_bytes(content)
    repo = root / "repos" / "model" / "alice" / "legacy"
    (repo / "commits").mkdir(parents=True)
    entry = {
        "sha256": sha,
        "size": len(content),
        "oid": hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest(),
        "lfs": False,
    }
    commit = {
        "parents": [],
        "title": "old",
        "message": "",
        "author": "alice",
        "date": "2025-01-01T00:00:00.000Z",
        "tree": {"dir/a.txt": entry},
    }
    commit_id = "1" * 40
    (repo / "commits" / f"{commit_id}.json").write_text(json.dumps(commit))
    (repo / "refs.json").write_text(json.dumps({"branches": {"main": commit_id}, "tags": {}, "prs": {}}))
    (repo / "repo.json").write_text(json.dumps({"private": False, "created_at": "2025-01-01T00:00:00.000Z"}))
    hub = _start(root)
    try:
        api = _api(hub, "alice")
        assert api.model_info("alice/legacy").sha == commit_id
        assert [f.path for f in api.list_repo_tree("alice/legacy", recursive=True)] == ["dir", "dir/a.txt"]
        assert _commit(hub, "alice/legacy", "new", {"dir/b.txt": b"b"}, parentCommit=commit_id)[0] == 200
        assert (
            Path(
                hf_hub_download("alice/legacy", "dir/a.txt", endpoint=hub.endpoint, token=False)
            ).read_bytes()
            == content
        )
    finally:
        hub.stop()


# with hub26's conformance routes (move, PRs, gates, LFS deletion) ---------------------------------
def test_moving_a_repo_needs_rights_in_the_target_namespace_too(hub):
    alice, carol = _api(hub, "alice"), _api(hub, "carol")
    alice.create_repo("alice/to-move")
    with pytest.raises(HfHubHTTPError, match="carol") as err:
        alice.move_repo("alice/to-move", "carol/taken-over")
    assert err.value.response.status_code == 403
    assert not carol.repo_exists("carol/taken-over") and alice.repo_exists("alice/to-move")
    with pytest.raises(HfHubHTTPError) as err:  # nor may carol move alice's repo into her namespace
        carol.move_repo("alice/to-move", "carol/taken-over")
    assert err.value.response.status_code == 403
    alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="ALICE/To-Move")  # ids ignore case
    alice.move_repo("alice/to-move", "lab/moved")  # alice is a member of the organisation 'lab'
    assert carol.model_info("alice/to-move").id == "lab/moved"


def test_anyone_with_a_write_token_may_open_a_pull_request(hub):
    alice, carol, dave = _api(hub, "alice"), _api(hub, "carol"), _api(hub, "dave")
    alice.create_repo("alice/pr-target")
    operations = [CommitOperationAdd("regular.txt", b"text"), CommitOperationAdd("lfs.bin", os.urandom(64))]
    info = carol.create_commit("alice/pr-target", operations, commit_message="PR", create_pr=True)
    assert info.pr_revision == "refs/pr/1"
    assert set(carol.list_repo_files("alice/pr-target", revision="refs/pr/1")) >= {"regular.txt", "lfs.bin"}
    assert "lfs.bin" not in carol.list_repo_files("alice/pr-target")  # main is untouched
    with pytest.raises(HfHubHTTPError) as err:  # a direct commit still needs membership
        carol.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/pr-target")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:  # a read token opens nothing
        dave.create_commit(
            "alice/pr-target", [CommitOperationAdd("d.txt", b"d")], commit_message="PR", create_pr=True
        )
    assert err.value.response.status_code == 403
    alice.create_repo("alice/pr-private", private=True)
    with pytest.raises(RepositoryNotFoundError):  # nor may anyone open a PR on a repo they cannot see
        carol.create_commit(
            "alice/pr-private", [CommitOperationAdd("c.txt", b"c")], commit_message="PR", create_pr=True
        )


def test_gated_repos_let_members_of_the_owning_organisation_in(hub, tmp_path):
    alice = _api(hub, "alice")
    alice.create_repo("lab/gated")
    alice.upload_file(path_or_fileobj=b"data", path_in_repo="f.txt", repo_id="lab/gated")
    alice.update_repo_settings("lab/gated", gated="auto")
    got = hf_hub_download(
        "lab/gated", "f.txt", endpoint=hub.endpoint, token=TOKENS["dave"], force_download=True
    )
    assert Path(got).read_bytes() == b"data"  # dave is a member of 'lab'
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            "lab/gated", "f.txt", endpoint=hub.endpoint, token=TOKENS["carol"], cache_dir=tmp_path
        )


def test_a_commit_waiting_while_its_repo_is_renamed_follows_the_repo(hub):
    alice = _api(hub, "alice")
    alice.create_repo("alice/racing")
    store = hub.repos
    stale = store.get("model", "alice/racing")  # what a commit holds while it waits for the lock
    store.move(store.get("model", "alice/racing"), "alice/renamed")
    with store.lock(stale):
        assert stale.path == store.get("model", "alice/renamed").path
        assert stale.meta.repo_id == "alice/renamed"
    assert not (Path(hub.root) / "repos" / "model" / "alice" / "racing").exists()
    # over HTTP: a commit sent to the old name lands in the renamed repo
    alice.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id="alice/racing")
    assert "late.txt" in alice.list_repo_files("alice/renamed")


def test_permanently_deleted_lfs_files_lose_their_bytes_unless_used_elsewhere(hub, tmp_path):
    alice, bob = _api(hub, "alice"), _api(hub, "bob")
    alice.create_repo("alice/lfs-gc")
    bob.create_repo("bob/lfs-keep")
    own, shared = os.urandom(4096), os.urandom(4096)
    for name, data in (("own.bin", own), ("shared.bin", shared)):
        _lfs_upload(hub, "alice", "alice/lfs-gc", data)
        assert _lfs_commit(hub, "alice", "alice/lfs-gc", name, data)[0] == 200
    _lfs_upload(hub, "bob", "bob/lfs-keep", shared)
    assert _lfs_commit(hub, "bob", "bob/lfs-keep", "shared.bin", shared)[0] == 200
    blob = {
        d: Path(hub.root) / "objects" / h[:2] / h[2:]
        for d in (own, shared)
        for h in [hashlib.sha256(d).hexdigest()]
    }
    assert blob[own].exists() and blob[shared].exists()

    before = alice.list_repo_commits("alice/lfs-gc")[0].commit_id
    alice.permanently_delete_lfs_files("alice/lfs-gc", list(alice.list_lfs_files("alice/lfs-gc")))
    assert list(alice.list_lfs_files("alice/lfs-gc")) == []
    assert not blob[own].exists()  # no other repo links it: its bytes are gone
    assert blob[shared].exists()  # bob's repo still holds it
    with pytest.raises(EntryNotFoundError):  # the rewritten-away commit no longer serves it either
        hf_hub_download(
            "alice/lfs-gc",
            "own.bin",
            revision=before,
            endpoint=hub.endpoint,
            token=TOKENS["alice"],
            cache_dir=tmp_path,
        )
    got = hf_hub_download("bob/lfs-keep", "shared.bin", endpoint=hub.endpoint, token=TOKENS["bob"])
    assert Path(got).read_bytes() == shared
    # alice's repo no longer knows the content: a commit must upload it again first
    assert _lfs_commit(hub, "alice", "alice/lfs-gc", "shared.bin", shared)[0] == 400
