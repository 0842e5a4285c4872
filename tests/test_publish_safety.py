"""What a push may publish: no symbolic link out of the folder, and a round trip checked from
one tree listing (no per-file downloads), against the local Hub over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from faulty_proxy import FaultyProxy
from huggingface_hub import HfApi

from hubkit.errors import HubkitError
from hubkit.publish import publishable_files, push_folder, verify_round_trip


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "artifact"
    (root / "sub").mkdir(parents=True)
    (root / "README.md").write_text("# hello\n")
    (root / "sub" / "notes.txt").write_text("nested\n")
    (root / "assets.tar").write_bytes(os.urandom(200_000))  # an LFS file on the Hub
    return root


@pytest.mark.parametrize("target", ["/proc/self/environ", "outside.txt", "outside-dir"])
@pytest.mark.parametrize("follow", [False, True])
def test_a_link_out_of_the_folder_is_refused_and_nothing_created(local_hub, tmp_path, target, follow):
    root = _folder(tmp_path)
    (tmp_path / "outside.txt").write_text("private notes of the user\n")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "diary.txt").write_text("private\n")
    link = root / "sub" / "innocent.txt"
    link.symlink_to(target if target.startswith("/") else tmp_path / target)
    repo_id = f"alice/link-{Path(target).name}-{follow}"
    with pytest.raises(HubkitError, match=r"sub/innocent\.txt: a symbolic link"):
        push_folder(root, repo_id, follow_symlinks=follow)
    assert not HfApi().repo_exists(repo_id)


def test_links_inside_the_folder_are_published_only_when_followed(local_hub, tmp_path):
    root = _folder(tmp_path)
    (root / "alias.txt").symlink_to("sub/notes.txt")
    (root / "same-sub").symlink_to(root / "sub")
    with pytest.raises(HubkitError, match="alias.txt: a symbolic link .*--follow-symlinks"):
        publishable_files(root)
    files = publishable_files(root, follow_symlinks=True)
    assert sorted(files) == [
        "README.md",
        "alias.txt",
        "assets.tar",
        "same-sub/notes.txt",
        "sub/notes.txt",
    ]
    result = push_folder(root, "alice/link-inside", follow_symlinks=True)
    assert sorted(HfApi().list_repo_files("alice/link-inside")) == [".gitattributes", *sorted(files)]
    alias = HfApi().hf_hub_download("alice/link-inside", "alias.txt", revision=result.commit)
    assert Path(alias).read_text() == "nested\n"


def test_a_link_loop_and_a_fifo_are_refused(tmp_path):
    root = _folder(tmp_path)
    (root / "sub" / "loop").symlink_to(root)
    with pytest.raises(HubkitError, match="symbolic link loop"):
        publishable_files(root, follow_symlinks=True)
    (root / "sub" / "loop").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(HubkitError, match="pipe: not a regular file"):
        publishable_files(root)


def test_cli_refuses_a_link_and_follows_one_inside_when_asked(local_hub, tmp_path):
    root = _folder(tmp_path)
    (root / "alias.txt").symlink_to("README.md")

    def hubkit(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hubkit", "push", str(root), "alice/cli-link", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    refused = hubkit()
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"{root / 'alias.txt'}: a symbolic link" in refused.stderr
    assert not HfApi().repo_exists("alice/cli-link")
    followed = hubkit("--follow-symlinks")
    assert followed.returncode == 0, followed.stderr
    assert "alias.txt" in HfApi().list_repo_files("alice/cli-link")


def test_a_noop_repush_checks_the_round_trip_without_downloading(local_hub, tmp_path):
    root = _folder(tmp_path)
    for i in range(40):
        (root / "sub" / f"f{i:02d}.txt").write_text(f"file {i}\n")
    push_folder(root, "alice/bulk-noop")
    requests: list[tuple[str, str]] = []

    def record(method: str, path: str) -> bool:
        requests.append((method, path))
        return False

    with FaultyProxy(local_hub.endpoint, record) as proxy:
        again = push_folder(root, "alice/bulk-noop", endpoint=proxy.endpoint)
    assert not again.created_commit
    assert not [r for r in requests if "/resolve/" in r[1]], requests
    assert len(requests) < 12, requests  # a handful of listings, not one request per file


@pytest.mark.parametrize("changed", ["sub/notes.txt", "assets.tar"])
def test_the_round_trip_sees_a_file_that_differs(local_hub, tmp_path, changed):
    root = _folder(tmp_path)
    result = push_folder(root, f"alice/bulk-differs-{changed[:3]}")
    path = root / changed
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # same size, other content
    path.write_bytes(bytes(data))
    files = publishable_files(root)
    with pytest.raises(HubkitError, match=rf"{changed}: differs from the local file|{changed} differs"):
        verify_round_trip(HfApi(), result.repo_id, "model", result.commit, files)
