"""The local Hub answers as huggingface.co where huggingface_hub's own test suite checks it.

Each test guards one behaviour that tests/conformance/run_hfh_suite.py found missing or different
(status, X-Error-Code, the message text the client matches, headers), through the stock client
over real HTTP on 127.0.0.1, against the session Hub of conftest.py (writer alice, reader bob).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    RepoCard,
    hf_hub_download,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import get_session


@pytest.fixture(scope="module")
def api(local_hub) -> HfApi:
    return HfApi(endpoint=local_hub.endpoint)


def _repo(api: HfApi, name: str, files: dict[str, bytes] | None = None, **kwargs) -> str:
    repo_id = api.create_repo(f"alice/{name}", **kwargs).repo_id
    if files:
        operations = [CommitOperationAdd(path, data) for path, data in files.items()]
        api.create_commit(repo_id, operations, commit_message="files", repo_type=kwargs.get("repo_type"))
    return repo_id


def test_move_repo_keeps_old_name_working(api, tmp_path):
    old = _repo(api, "to-move", {"file.txt": b"content"}, private=True)
    api.move_repo(old, "alice/moved")
    assert api.model_info("alice/moved").id == "alice/moved"
    # the old name redirects, for the API and for downloads
    assert api.model_info(old).id == "alice/moved"
    assert Path(hf_hub_download(old, "file.txt", cache_dir=tmp_path)).read_bytes() == b"content"
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="file.txt", repo_id=old)
    assert api.hf_hub_download("alice/moved", "file.txt", cache_dir=tmp_path / "2") is not None

    other = _repo(api, "move-target")
    with pytest.raises(HfHubHTTPError, match=r"A model repository called .* already exists") as err:
        api.move_repo("alice/moved", other)
    assert err.value.response.status_code == 409
    api.move_repo("alice/moved", old)  # back to the first name: no redirect loop
    assert api.model_info(old).id == api.model_info("alice/moved").id == old


def test_super_squash_history(api):
    repo = _repo(api, "squash", {"a.txt": b"1"})
    api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id=repo)
    api.create_branch(repo, branch="dev")
    api.super_squash_history(repo_id=repo)
    main = api.list_repo_commits(repo)
    assert [c.title for c in main] == ["Super-squash branch 'main' using huggingface_hub"]
    assert len(api.list_repo_commits(repo, revision="dev")) == 3  # other branches keep their history
    assert hf_hub_download(repo, "a.txt") and api.list_repo_files(repo) == [".gitattributes", "a.txt"]
    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo_id=repo, branch="missing")


def test_list_and_permanently_delete_lfs_files(api):
    repo = _repo(api, "lfs-files", {"main.bin": b"LFS main", "text.txt": b"text"})
    api.create_branch(repo, branch="side")
    api.upload_file(path_or_fileobj=b"LFS side", path_in_repo="side.bin", repo_id=repo, revision="side")
    files = {f.filename: f for f in api.list_lfs_files(repo)}
    assert set(files) == {"main.bin", "side.bin"}
    assert (files["main.bin"].ref, files["side.bin"].ref) == ("main", "side")
    assert files["main.bin"].size == len(b"LFS main")

    api.permanently_delete_lfs_files(repo, [files["main.bin"]])
    assert [f.filename for f in api.list_lfs_files(repo)] == ["side.bin"]
    assert api.list_repo_files(repo) == [".gitattributes", "text.txt"]  # gone from every commit
    assert "main.bin" not in api.list_repo_files(repo, revision="side")
    for commit in api.list_repo_commits(repo):  # history is rewritten too
        assert "main.bin" not in api.list_repo_files(repo, revision=commit.commit_id)


def test_repo_ids_without_namespace_are_not_found(api):
    assert not api.repo_exists("missing_repo_id")
    assert not api.file_exists("missing_repo_id", "file.txt")
    assert not api.revision_exists("missing_repo_id", "main")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("missing_repo_id")


def test_gated_repo_refuses_users_without_access(api, read_token):
    repo = _repo(api, "gated-for-others", {"g.txt": b"g"})
    api.update_repo_settings(repo, gated="auto")
    with pytest.raises(GatedRepoError, match="is restricted and you are not in the authorized list") as err:
        hf_hub_download(repo, "g.txt", token=read_token)
    assert err.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        api.auth_check(repo, token=read_token)
    api.auth_check(repo)  # alice owns the namespace
    response = get_session().get(f"{api.endpoint}/{repo}/resolve/main/g.txt")  # anonymous
    assert response.status_code == 401 and response.headers["X-Error-Code"] == "GatedRepo"


def test_path_rules(api):
    repo = _repo(api, "paths")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="..\\ddd", repo_id=repo)
    assert err.value.response.status_code == 422
    # deeper backslashes are file-name characters on the Hub: clients refuse to download them outside
    api.upload_file(path_or_fileobj=b"x", path_in_repo="folder/..\\file", repo_id=repo)
    assert "folder/..\\file" in api.list_repo_files(repo)


def test_refs_answer_with_the_hubs_codes_and_texts(api):
    repo = _repo(api, "refs-texts", {"f.txt": b"1"})
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo, tag="invalid tag", revision="foobar")  # the revision is checked first
    head = api.model_info(repo).sha
    with pytest.raises(RevisionNotFoundError):  # a pull request targets a branch, not a commit
        api.upload_file(path_or_fileobj=b"p", path_in_repo="p", repo_id=repo, revision=head, create_pr=True)
    api.create_branch(repo, branch="cool-branch")
    with pytest.raises(HfHubHTTPError, match=r"Reference refs/heads/cool-branch already exists") as err:
        api.create_branch(repo, branch="cool-branch")
    assert err.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError, match="Cannot delete refs/heads/main") as err:
        api.delete_branch(repo, branch="main")
    assert err.value.response.status_code == 403

    stale = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=b"2", path_in_repo="f.txt", repo_id=repo)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            repo, [CommitOperationAdd("g.txt", b"g")], commit_message="late", parent_commit=stale
        )
    assert err.value.response.status_code == 412
    assert "The branch was updated since you opened this page. Please refresh and try again." in str(
        err.value
    )


def test_delete_file_operation_on_a_folder_deletes_it(api):
    repo = _repo(api, "delete-folder", {"1/a.txt": b"a", "1/2/b.txt": b"b", "keep.txt": b"k"})
    api.create_commit(repo, [CommitOperationDelete(path_in_repo="1")], commit_message="drop folder 1")
    assert api.list_repo_files(repo) == [".gitattributes", "keep.txt"]


def test_repo_ids_are_case_insensitive(api):
    repo = _repo(api, "CaSe_Is_ImPoRtAnT")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo.lower())
    assert api.model_info(repo.upper()).id == repo  # answered with the repo's own spelling
    assert "x.txt" in api.list_repo_files(repo)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo.lower())
    assert err.value.response.status_code == 409


def test_request_id_header(api, local_hub):
    response = get_session().get(f"{local_hub.endpoint}/api/models", headers={"X-Request-Id": "custom-id"})
    assert response.headers["X-Request-Id"] == "custom-id"
    response = get_session().get(f"{local_hub.endpoint}/api/models")
    trace = response.request.headers["X-Amzn-Trace-Id"]  # the client's per-request id
    assert trace in response.headers["X-Request-Id"]
    with pytest.raises(HfHubHTTPError, match=re.compile(r"\(Request ID: .+\).*Repository Not Found", re.S)):
        api.delete_repo("alice/never-created")


def test_repo_not_found_message_is_the_clients_own(api):
    with pytest.raises(RepositoryNotFoundError) as err:
        api.create_commit("alice/absent", [CommitOperationAdd("c.json", b"{}")], commit_message="m")
    request_id = err.value.response.headers["X-Request-Id"]
    assert str(err.value).startswith(
        f"404 Client Error. (Request ID: {request_id})\n\nRepository Not Found for url"
    )


def test_validate_yaml_as_the_hub(api):
    repo = _repo(api, "cards-hub")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):  # after a leading blank line
        api.upload_file(
            path_or_fileobj=b"\n---\nmodel-index: foo\n---\n", path_in_repo="README.md", repo_id=repo
        )
    with pytest.warns(UserWarning, match="Empty or missing yaml metadata in repo card"):
        api.upload_file(path_or_fileobj=b"No metadata here", path_in_repo="README.md", repo_id=repo)

    card = RepoCard("---\nlicense: mit\n---\n# card\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card.validate()
    card.data.license = "asdf"
    with pytest.raises(ValueError, match='- Error: "license" must be one of'):
        card.validate()


def test_list_user_repos_and_kernel_repos(api):
    kernel = _repo(api, "my-kernel", {"build/kernel.py": b"print('hi')"}, repo_type="kernel")
    commit = api.upload_file(path_or_fileobj=b"# k", path_in_repo="k.md", repo_id=kernel, repo_type="kernel")
    assert commit.commit_url.startswith(f"{api.endpoint}/kernels/{kernel}/commit/")
    repos = {r.id: r for r in api.list_user_repos()}
    assert repos[kernel].type == "kernel" and repos[kernel].visibility == "public"
    tree = api.list_repo_tree(kernel, repo_type="kernel", recursive=True)
    assert repos[kernel].storage == sum(f.size for f in tree if isinstance(f, RepoFile)) > 0
