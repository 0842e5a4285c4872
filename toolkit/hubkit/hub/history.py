"""History rewrites of the local Hub: super-squash a branch; list and permanently delete LFS files.

Each function runs under the repo's lock (the caller holds it) and moves refs with one atomic
``refs.json`` write, like a commit. Rewritten commits are new commit objects; the old ones stay
on disk unreferenced, as a crash would leave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .storage import Commit, Entry, Repo, revision_not_found

_REF_KINDS = (("branches", "refs/heads/"), ("tags", "refs/tags/"), ("prs", "refs/pr/"))


def _ref(refs: dict[str, dict[str, str]], revision: str) -> tuple[str, str]:
    """The (kind, name) of a branch (``main``, ``refs/heads/main``) or a ``refs/pr/N`` ref."""
    for kind, prefix in (("branches", "refs/heads/"), ("prs", "refs/pr/")):
        name = revision[len(prefix) :] if revision.startswith(prefix) else revision
        if name in refs[kind] and (kind == "branches" or revision.startswith(prefix)):
            return kind, name
    raise revision_not_found(revision)


def super_squash(repo: Repo, revision: str, message: str, author: str) -> str:
    """Replace a branch's history by one commit holding its current files; returns the commit id."""
    refs = repo.refs()
    kind, name = _ref(refs, revision)
    head = repo.commit(refs[kind][name])
    new_id = repo.write_commit([], message, "", author, head.tree.root)
    refs[kind][name] = new_id
    repo.write_refs(refs)
    return new_id


def _heads(repo: Repo) -> Iterator[tuple[str, str, str]]:
    """(kind, name, commit id) of every ref, ``main`` first, so a file's ref is main when it can be."""
    refs = repo.refs()
    for kind, _ in _REF_KINDS:
        for name in sorted(refs[kind], key=lambda n: (n != "main", n)):
            yield kind, name, refs[kind][name]


def lfs_files(repo: Repo) -> list[dict[str, Any]]:
    """Every LFS file reachable from a ref, once per content: where and when it was first pushed."""
    found: dict[str, dict[str, Any]] = {}
    for kind, name, head in _heads(repo):
        ref = name if kind == "branches" else f"{dict(_REF_KINDS)[kind]}{name}"
        for commit in reversed(list(repo.history(head))):  # oldest first
            for path, entry in sorted(commit.tree.files.items()):
                if entry.lfs and entry.sha256 not in found:
                    found[entry.sha256] = {
                        "fileOid": entry.sha256,
                        "oid": entry.oid,
                        "filename": path,
                        "size": entry.size,
                        "pushedAt": commit.date,
                        "ref": ref,
                    }
    return list(found.values())


def drop_lfs_files(repo: Repo, sha256s: set[str]) -> set[str]:
    """Rewrite the history of every ref without the LFS files of these contents.

    Returns the contents no rewritten commit holds any more (one may live on as a regular file).
    """
    rewritten: dict[str, str] = {}
    kept: set[str] = set()

    def rewrite(chain: list[Commit]) -> str:
        parent: str | None = None
        for commit in chain:  # oldest first
            if commit.id not in rewritten:
                ops: list[tuple[str, str, Entry | None]] = []
                for path, entry in commit.tree.files.items():
                    if entry.sha256 in sha256s:
                        if entry.lfs:
                            ops.append(("deletedFile", path, None))
                        else:
                            kept.add(entry.sha256)
                parents = [parent] if parent else []
                if not ops and commit.parents[:1] == parents:
                    rewritten[commit.id] = commit.id
                else:
                    tree = repo.write_tree(commit.tree, ops)
                    rewritten[commit.id] = repo.write_commit(
                        parents, commit.title, commit.message, commit.author, tree, commit.date
                    )
            parent = rewritten[commit.id]
        assert parent is not None
        return parent

    refs = repo.refs()
    for kind, name, head in _heads(repo):
        refs[kind][name] = rewrite(list(reversed(list(repo.history(head)))))
    repo.write_refs(refs)
    return sha256s - kept
