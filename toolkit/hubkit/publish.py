"""Publishing: scan a folder for credentials, push it in one commit, tag it, verify it.

``push_folder`` is the only way hubkit writes to a Hub: ``preflight_push`` then ``upload``,
which a caller publishing several repos runs for all of them before uploading any. The
pre-flight refuses a folder that holds a symbolic link or a credential, a hubkit artifact its
gate refuses (``gates``: claims recomputed from the files), weights or data without a hubkit
manifest (unless ``no_gate``), card metadata the Hub rejects or a reused version tag, with reads only;
the upload sends only what changed (an unchanged folder makes no commit and sends 0 bytes;
a bar counts the bytes as large files land),
makes the remote mirror the folder in a single commit whose parent is pinned (a concurrent
writer makes it fail rather than silently interleave), and then checks the round trip: the
remote file list and every file's sha256 equal the local ones.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .artifacts import sha256_file
from .console import console
from .credentials import credential_in
from .endpoint import current_endpoint, disable_xet_if_local
from .errors import HubkitError
from .gates import push_gate

RepoType = Literal["model", "dataset"]
_T = TypeVar("_T")

# What the card of a folder pushed with --no-gate says, and its commit.
NO_GATE_NOTICE = (
    "\n\n## Published without a gate\n\nPushed with `hubkit push --no-gate`: no hubkit gate checked "
    "these files (no leak certificate or equivalence check was recomputed).\n"
)
NO_GATE_COMMIT = "Pushed with --no-gate: no hubkit gate checked these files."
# Never uploaded: VCS and client bookkeeping.
IGNORED = (".git/*", ".cache/*", "*/__pycache__/*", "__pycache__/*", ".DS_Store")
_CHUNK = 1 << 20
_OWN_CALL = 1 << 20  # a file this large is uploaded before the commit, by a call of its own


@dataclass(frozen=True)
class PushResult:
    """What a push did: the commit it made (or found), bytes sent, and where it lives."""

    repo_id: str
    repo_type: str
    url: str
    revision: str
    commit: str
    created_commit: bool
    uploaded_bytes: int
    files: int
    tag: str | None = None
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    gate: str | None = None


def _ignored(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in IGNORED)


def publishable_files(folder: str | os.PathLike[str], *, follow_symlinks: bool = False) -> dict[str, Path]:
    """Map each file a push of ``folder`` would publish (relative POSIX path) to where it is read.

    A symbolic link (to a file or a folder) is refused: it can publish what lies outside the
    folder, such as ``/proc/self/environ`` or a home directory. With ``follow_symlinks`` a link
    is published as what it points to, but only when that stays inside the folder. Anything
    that is not a regular file (a FIFO, a socket, a device) is refused too.
    """
    root = Path(folder).resolve()
    files: dict[str, Path] = {}

    def visit(directory: Path, prefix: str, above: frozenset[Path]) -> None:
        if directory in above:  # a link to a folder holding it: a loop, not more files
            raise HubkitError(f"{Path(folder) / prefix}: a symbolic link loop; refusing to publish it")
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{prefix}{entry.name}"
            if _ignored(rel) or _ignored(f"{rel}/"):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not follow_symlinks:
                    raise HubkitError(
                        f"{Path(folder) / rel}: a symbolic link (to {os.readlink(path)}); push publishes "
                        "only regular files (--follow-symlinks publishes links that stay inside the folder)"
                    )
                if not target.is_relative_to(root) or not target.exists():
                    raise HubkitError(
                        f"{Path(folder) / rel}: a symbolic link to {os.readlink(path)}, outside the folder; "
                        "refusing to publish it"
                    )
                path = target
            if path.is_dir():
                visit(path.resolve(), f"{rel}/", above | {directory})
            elif path.is_file():
                files[rel] = path
            else:
                raise HubkitError(f"{Path(folder) / rel}: not a regular file; refusing to publish it")

    visit(root, "", frozenset())
    return files


def scan_for_credentials(
    folder: str | os.PathLike[str], *, follow_symlinks: bool = False
) -> list[tuple[str, str]]:
    """Every (relative path, reason) in ``folder`` that is or holds a credential."""
    return scan_files(publishable_files(folder, follow_symlinks=follow_symlinks))


def scan_files(files: dict[str, Path]) -> list[tuple[str, str]]:
    """Every (relative path, reason) among ``files`` that is or holds a credential."""
    return [(rel, why) for rel, path in files.items() if (why := credential_in(path, rel))]


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the Hub reports for non-LFS files."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _remote_files(api, repo_id: str, repo_type: str, revision: str) -> dict[str, object]:
    from huggingface_hub.hf_api import RepoFile

    tree = api.list_repo_tree(repo_id, repo_type=repo_type, revision=revision, recursive=True)
    return {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}


def _same(local: Path, remote) -> bool:
    if remote.size != local.stat().st_size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == sha256_file(local)
    return remote.blob_id == git_blob_sha1(local)


def _hub_error(exc: Exception, repo_id: str) -> HubkitError:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RepositoryNotFoundError):
        return HubkitError(f"{repo_id}: repository not found, or your token cannot see it")
    if isinstance(exc, RevisionNotFoundError):
        return HubkitError(f"{repo_id}: revision not found")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        message = str(exc).splitlines()[0]
        return HubkitError(f"{repo_id}: the Hub refused the request (HTTP {status}): {message}")
    return HubkitError(f"{repo_id}: cannot reach the Hub ({exc.__class__.__name__}: {exc})")


@dataclass(frozen=True)
class PushPlan:
    """A push whose checks have all passed without writing to the Hub; ``upload`` sends it.

    Checking every repo of a release before uploading any means a refusal publishes none.
    """

    root: Path
    files: dict[str, Path]
    repo_id: str
    repo_type: RepoType
    revision: str | None
    tag: str | None
    endpoint: str | None
    token: str | None = field(default=None, repr=False)
    gate: str | None = None  # what the artifact's gate recomputed; None: no gate applied
    no_gate: bool = False
    scratch: Any = field(default=None, repr=False, compare=False)  # holds a --no-gate card while it lives


def preflight_push(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    revision: str | None = None,
    tag: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    retries: int = 3,
    read_hub: bool = True,
    follow_symlinks: bool = False,
    no_gate: bool = False,
) -> PushPlan:
    """Every check of a push that writes nothing: the folder, the repo id, credentials, a hubkit
    merged model's equivalence check, the card metadata as the Hub judges it, and the tag.

    The Hub is only read (retried like the upload), so a refusal leaves it untouched;
    ``read_hub=False`` (a dry run) leaves out the two checks that read it, metadata and tag.
    A symbolic link is refused unless ``follow_symlinks`` and it points inside the folder. A hubkit
    artifact must pass its kind's gate; ``no_gate`` skips it, and the card and commit say so.
    """
    root = Path(folder)
    if not root.is_dir():
        raise HubkitError(f"{folder}: folder not found")
    local = publishable_files(root, follow_symlinks=follow_symlinks)
    if not local:
        raise HubkitError(f"{folder}: folder is empty; nothing to push")
    if findings := scan_files(local):
        rel, why = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise HubkitError(f"{root / rel}: {why}; refusing to push {repo_id}{more}")

    disable_xet_if_local(endpoint or current_endpoint())  # before huggingface_hub is imported
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubkitError(f"{repo_id}: not a valid repo id ({exc})") from None
    gate, scratch = None, None
    if no_gate:
        local, scratch = _with_no_gate_card(root, local)
    else:
        gate = push_gate(root, local)
    plan = PushPlan(root, local, repo_id, repo_type, revision, tag, endpoint, token, gate, no_gate, scratch)
    if read_hub:
        _with_retries(plan, retries, lambda api: _check_remote(api, plan))
    return plan


def upload(
    plan: PushPlan, *, private: bool | None = None, commit_message: str | None = None, retries: int = 3
) -> PushResult:
    """Send a checked push: one commit making the repo mirror the folder, tagged, then verified.

    The repo is created if needed (``private`` applies only then), the branch too. Server
    errors are retried ``retries`` times with backoff; each attempt starts from what the
    remote holds, so a commit that landed before its answer was lost is not made twice.
    """
    return _with_retries(plan, retries, lambda api: _push_once(api, plan, private, commit_message))


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    private: bool | None = None,
    revision: str | None = None,
    tag: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    retries: int = 3,
    follow_symlinks: bool = False,
    no_gate: bool = False,
) -> PushResult:
    """Publish ``folder`` as the whole content of ``repo_id`` at ``revision``, in one commit:
    ``preflight_push`` then ``upload``. Remote files absent locally are deleted in the same
    commit, so the repo mirrors the folder.
    """
    plan = preflight_push(
        folder,
        repo_id,
        repo_type=repo_type,
        revision=revision,
        tag=tag,
        endpoint=endpoint,
        token=token,
        retries=retries,
        follow_symlinks=follow_symlinks,
        no_gate=no_gate,
    )
    return upload(plan, private=private, commit_message=commit_message, retries=retries)


def _with_no_gate_card(root: Path, files: dict[str, Path]) -> tuple[dict[str, Path], Any]:
    """``files`` with a README.md whose card says it was published without a gate (the folder's own
    card plus the notice, or the notice alone), written to a scratch folder the plan keeps."""
    readme = files.get("README.md")
    text = readme.read_text(encoding="utf-8") if readme is not None else f"# {root.resolve().name}\n"
    scratch = tempfile.TemporaryDirectory(prefix="hubkit-no-gate-")
    card = Path(scratch.name) / "README.md"
    card.write_text(text if NO_GATE_NOTICE in text else text.rstrip("\n") + NO_GATE_NOTICE, encoding="utf-8")
    return {**files, "README.md": card}, scratch


def _with_retries(plan: PushPlan, retries: int, call: Callable[[Any], _T]) -> _T:
    """``call(api)``, retried on transient errors; a Hub error comes out as one HubkitError line."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError  # HfHubHTTPError and transport errors alike

    api = HfApi(endpoint=plan.endpoint, token=plan.token)
    for attempt in range(retries + 1):
        try:
            return call(api)
        except HTTPError as exc:
            if attempt == retries or not _transient(exc):
                raise _hub_error(exc, plan.repo_id) from exc
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _transient(exc: Exception) -> bool:
    """Server errors, rate limits and dropped connections are worth another try."""
    response = getattr(exc, "response", None)
    if response is None:
        return True
    return response.status_code == 429 or response.status_code >= 500


def _check_remote(api, plan: PushPlan) -> None:
    """With reads only, what the commit would be refused for: README metadata the Hub rejects
    (``create_commit`` asks the same endpoint), or a version tag already naming other content."""
    from huggingface_hub.errors import BadRequestError

    readme = plan.files.get("README.md")
    if readme is not None:
        try:
            # huggingface_hub's own check (private), the one create_commit runs after create_repo
            api._validate_yaml(readme.read_text(encoding="utf-8"), repo_type=plan.repo_type)
        except ValueError as exc:
            if not isinstance(exc.__cause__, BadRequestError):  # an unreadable answer, not a verdict
                raise HubkitError(
                    f"{plan.repo_id}: the Hub gave no verdict on the card metadata ({exc})"
                ) from None
            reasons = "; ".join(line.removeprefix("- ") for line in str(exc).splitlines()[1:])
            raise HubkitError(
                f"{readme}: invalid card metadata ({reasons}); refusing to push {plan.repo_id}"
            ) from None
    if plan.tag is None or not api.repo_exists(plan.repo_id, repo_type=plan.repo_type):
        return
    refs = api.list_repo_refs(plan.repo_id, repo_type=plan.repo_type)
    tags = {t.name: t.target_commit for t in refs.tags}
    if plan.tag in tags:
        heads = {b.name: b.target_commit for b in refs.branches}
        parent = heads.get(plan.revision or "main") or heads["main"]  # a new branch starts at main
        _check_tag(plan, tags, parent, *_changes(api, plan, parent))


def _changes(api, plan: PushPlan, parent: str) -> tuple[list[str], list[str]]:
    """(files to upload, remote files to delete) for the repo to mirror the folder at ``parent``."""
    remote = _remote_files(api, plan.repo_id, plan.repo_type, parent)
    local = plan.files
    changed = sorted(rel for rel, path in local.items() if rel not in remote or not _same(path, remote[rel]))
    deleted = sorted(rel for rel in remote if rel not in local and rel != ".gitattributes")
    return changed, deleted


def _check_tag(
    plan: PushPlan, tags: dict[str, str], parent: str, changed: list[str], deleted: list[str]
) -> None:
    """A version tag is never moved: reusing it is fine only for the very commit it names."""
    tag = plan.tag
    if tag is not None and tag in tags and (changed or deleted or tags[tag] != parent):
        raise HubkitError(
            f"{plan.repo_id}: tag {tag!r} already exists at {tags[tag][:12]}; choose a new version"
        )


def _push_once(api, plan: PushPlan, private: bool | None, commit_message: str | None) -> PushResult:
    """One attempt; safe to repeat, since it recomputes what differs from the remote each time."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo_id, repo_type, local, tag = plan.repo_id, plan.repo_type, plan.files, plan.tag
    repo_url = api.create_repo(repo_id, repo_type=repo_type, private=bool(private), exist_ok=True)
    branch = plan.revision or "main"
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    heads = {b.name: b.target_commit for b in refs.branches}
    tags = {t.name: t.target_commit for t in refs.tags}
    if branch not in heads:
        api.create_branch(repo_id, repo_type=repo_type, branch=branch)
        heads[branch] = api.repo_info(repo_id, repo_type=repo_type, revision=branch).sha
    parent = heads[branch]
    changed, deleted = _changes(api, plan, parent)
    _check_tag(plan, tags, parent, changed, deleted)  # again: the tag may have appeared since the pre-flight
    commit, created = parent, False
    if changed or deleted:
        sizes = {rel: local[rel].stat().st_size for rel in changed}
        additions = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(local[rel])) for rel in changed]
        message = commit_message or f"Upload {plan.root.resolve().name} with hubkit"
        with console().progress(total=sum(sizes.values()), desc=repo_id, unit="B", unit_scale=True) as bar:
            # A large file goes up by a call of its own, so the bar moves as each one lands;
            # create_commit then sends the rest with the commit (the files preuploaded are skipped).
            for op in additions:
                if sizes[op.path_in_repo] >= _OWN_CALL:
                    api.preupload_lfs_files(repo_id, [op], repo_type=repo_type, revision=branch)
                    bar.update(sizes[op.path_in_repo])
            info = api.create_commit(
                repo_id,
                [*additions, *(CommitOperationDelete(path_in_repo=rel) for rel in deleted)],
                commit_message=f"{message} (--no-gate)" if plan.no_gate else message,
                commit_description=NO_GATE_COMMIT if plan.no_gate else None,
                repo_type=repo_type,
                revision=branch,
                parent_commit=parent,
            )
            bar.update(bar.total - bar.n)
        commit, created = info.oid, True
    if tag is not None and tag not in tags:
        api.create_tag(repo_id, tag=tag, revision=commit, repo_type=repo_type)
    verify_round_trip(api, repo_id, repo_type, commit, local)
    return PushResult(
        repo_id=repo_id,
        repo_type=repo_type,
        url=str(repo_url),
        revision=branch,
        commit=commit,
        created_commit=created,
        uploaded_bytes=sum(local[rel].stat().st_size for rel in changed),
        files=len(local),
        tag=tag,
        changed=changed,
        deleted=deleted,
        gate=plan.gate,
    )


def verify_round_trip(api, repo_id: str, repo_type: str, commit: str, files: dict[str, Path]) -> None:
    """Check that the repo at ``commit`` holds exactly ``files``, each with the local content.

    One recursive tree listing (paged by the Hub, 1,000 entries a page) gives every remote file's
    size with its sha256 (LFS files) or git blob id (a sha1 of its bytes, regular files); both
    are compared with the local file's, so no file is downloaded again.
    """
    remote = _remote_files(api, repo_id, repo_type, commit)
    names = set(remote) - ({".gitattributes"} - set(files))  # the Hub's own, unless the folder brings one
    if names != set(files):
        diff = sorted(names.symmetric_difference(files))
        raise HubkitError(
            f"{repo_id}@{commit[:12]}: remote files differ from the folder ({', '.join(diff[:5])})"
        )
    for rel in sorted(files):
        if not _same(files[rel], remote[rel]):
            raise HubkitError(f"{repo_id}@{commit[:12]}: {rel} differs from the local file after upload")
