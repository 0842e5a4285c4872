"""The conftest.py that run_hfh_suite.py installs into huggingface_hub's unpacked test suite.

The sdist ships the tests without their conftest.py, so this stands in for it: the fixtures the
tests import (``api``, ``repo_factory`` and ``RepoFactory``), network access limited to the local
Hub, the skipped feature families, and a record of which tests reached the server. It is not a
hubkit test module (pytest in this repository never collects it): it runs only inside that suite.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
from huggingface_hub import HfApi, RepoUrl

from . import testing_constants

HUB_URL = os.environ["HFH_SUITE_HUB_URL"]
HUB_LOG = Path(os.environ["HFH_SUITE_HUB_LOG"])
RESULTS = Path(os.environ["HFH_SUITE_RESULTS"])

# The tests import these names from testing_constants; conftest.py is imported first: they see the local Hub.
testing_constants.ENDPOINT_STAGING = HUB_URL
testing_constants.ENDPOINT_PRODUCTION_URL_SCHEME = HUB_URL + "/{repo_id}/resolve/{revision}/{filename}"

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_getaddrinfo = socket.getaddrinfo


def _local_only_getaddrinfo(host, *args, **kwargs):
    """Every connection resolves its host first: anything but the local Hub is refused."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in _LOCAL_HOSTS:
        raise socket.gaierror(socket.EAI_NONAME, f"network blocked by the conformance run: {name}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only_getaddrinfo

# Feature families a file server need not have: (name, pattern on the test id, reason).
FAMILIES = [
    ("spaces", r"(?<![a-z])spaces?(?![a-z])|testspace|gradio", "Spaces need a runtime"),
    ("inference", r"inference|provider|tgi", "inference runs models"),
    (
        "discussions/PRs",
        r"discussion|pull_request|empty_commit_on_pr|push_and_create_pr|squash_history_on_special_ref",
        "needs the discussions API (opening, listing or merging pull requests)",
    ),
    ("collections", r"collection", "no collections"),
    ("webhooks", r"webhook", "no webhooks"),
    ("likes", r"(?<![a-z])(un)?like(s|d|rs)?(?![a-z])", "no likes"),
    ("papers", r"paper", "no papers"),
    ("xet", r"xet", "the local Hub speaks plain LFS, not Xet"),
    ("access requests", r"access_request", "no access requests"),
]
_MARKERS = {
    "production": "needs the production Hub (huggingface.co): network is blocked",
    "xet": "the local Hub speaks plain LFS, not Xet",
    "git_lfs": "needs git and git-lfs against a git server",
    "inference": "inference runs models",
}


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("api", "transfer", "inference", "xet", "no_xet", "production", "deprecated", "git_lfs"):
        config.addinivalue_line("markers", f"{marker}: marker of huggingface_hub's suite")


def family_of(nodeid: str) -> tuple[str, str] | None:
    """The skipped family a test belongs to, by its file, class and name (not its parameters), or None."""
    lowered = nodeid.split("[")[0].lower()
    for name, pattern, reason in FAMILIES:
        if re.search(pattern, lowered):
            return name, reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, reason in _MARKERS.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=f"[{marker}] {reason}"))
                break
        else:
            if (found := family_of(item.nodeid)) is not None:
                item.add_marker(pytest.mark.skip(reason=f"[{found[0]}] {found[1]}"))


class RepoFactory:
    """Creates repos on the local Hub for one test and deletes them afterwards."""

    def __init__(self, api: HfApi):
        self.api = api
        self.created: list[tuple[str, str, str]] = []

    def __call__(
        self, repo_type: str | None = None, *, repo_id: str | None = None, token: str | None = None, **kwargs
    ) -> RepoUrl:
        from .testing_utils import repo_name

        token = token or testing_constants.TOKEN
        url = self.api.create_repo(repo_id or repo_name(), repo_type=repo_type, token=token, **kwargs)
        self.created.append((url.repo_id, url.repo_type or "model", token))
        return url

    def cleanup(self) -> None:
        for repo_id, repo_type, token in self.created:
            self.api.delete_repo(repo_id, repo_type=repo_type, token=token, missing_ok=True)


@pytest.fixture(scope="session")
def api() -> HfApi:
    """The suite's user on the local Hub (session-wide: class-scoped fixtures use it too)."""
    return HfApi(endpoint=HUB_URL, token=testing_constants.TOKEN)


@pytest.fixture
def repo_factory(api: HfApi):
    factory = RepoFactory(api)
    yield factory
    factory.cleanup()


@pytest.fixture
def new_repo_id(api: HfApi):
    """The id of a repo that does not exist yet; deleted afterwards if the test created it."""
    from .testing_utils import repo_name

    repo_id = f"{testing_constants.USER}/{repo_name()}"
    yield repo_id
    api.delete_repo(repo_id, missing_ok=True)


def _log_size() -> int:
    """The server logs every request it answers, so a test that reached it grew the log."""
    return HUB_LOG.stat().st_size


_results: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    before = _log_size()
    yield
    record = _results.setdefault(item.nodeid, {"outcome": "passed", "reason": ""})
    record["touched"] = _log_size() > before


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _results.setdefault(report.nodeid, {"outcome": "passed", "reason": ""})
    if report.skipped and record["outcome"] == "passed":
        record["outcome"] = "skipped"
        longrepr = report.longrepr
        record["reason"] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    elif report.failed:
        record["outcome"] = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        record["reason"] = (crash.message if crash else str(report.longrepr)).splitlines()[0][:300]


def pytest_sessionfinish(session: pytest.Session) -> None:
    RESULTS.write_text(json.dumps(_results, indent=1))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        reason = str(report.longrepr).strip().splitlines()[-1][:300]
        reason = f"collection error: {reason}"
        _results[report.nodeid] = {"outcome": "failed", "reason": reason, "touched": False}
