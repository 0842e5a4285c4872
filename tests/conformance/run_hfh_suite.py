"""Run huggingface_hub's own test suite against a local Hub and report how much of it passes.

The suite comes from the sdist of the INSTALLED huggingface_hub, fetched from the package index
into a temporary folder (nothing of it is kept). Its tests talk to the staging Hub through
``ENDPOINT_STAGING`` and the users and tokens of ``tests/testing_constants.py``; here they talk
to a local Hub started for the run, where those tokens are registered as write tokens. Every
other network access is refused. Feature families a file server need not have (Spaces,
inference, discussions/PRs, collections, webhooks, likes, papers, Xet, access requests) are
skipped with their reason.

Prints passed / failed / skipped per test class, the failures among the tests that reached the
server, and the share of those tests that pass. Exits 1 below ``--target`` (percent).

    PYTHONPATH=toolkit python tests/conformance/run_hfh_suite.py [--sdist FILE] [pytest targets...]

Needs the package index (pip download); not part of the normal test run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def download_sdist(version: str, dest: Path) -> Path:
    """The huggingface_hub sdist of ``version``, from the package index pip is configured with."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*cmd, f"huggingface_hub=={version}", "-d", str(dest)], check=True)
    found = sorted(dest.glob("huggingface_hub-*.tar.gz"))
    if not found:
        sys.exit(f"pip download left no huggingface_hub sdist in {dest}")
    return found[0]


def test_python(work: Path, version: str) -> str:
    """A Python for the suite: this environment plus huggingface_hub's ``testing`` extras on top.

    A fresh venv reads this environment's site-packages through a .pth file, so pip installs only
    what is missing (jedi, pytest-mock, ...) into the venv and leaves this environment untouched.
    """
    import site
    import venv

    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    Path(purelib, "zz_parent_environment.pth").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"huggingface_hub[testing]=={version}"], check=True
    )
    return str(python)


def unpack_tests(sdist: Path, dest: Path) -> Path:
    """Extract only the sdist's ``tests/`` folder and make it the package its modules expect."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
        if not members:
            sys.exit(f"{sdist.name} carries no tests/ folder")
        tar.extractall(dest, members=members, filter="data")
    tests = dest / members[0].name.split("/")[0] / "tests"
    (tests / "__init__.py").touch()
    shutil.copyfile(HERE / "suite_conftest.py", tests / "conftest.py")
    (tests.parent / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    return tests


def start_hub(root: Path, log: Path, constants: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``hubkit hub serve`` on a free port, with the suite's users' tokens as write tokens and its org."""
    tokens = [
        (constants["USER"], constants["TOKEN"]),
        (constants["OTHER_USER"], constants["OTHER_TOKEN"]),
        (constants["ENTERPRISE_USER"], constants["ENTERPRISE_TOKEN"]),
    ]
    args = ["hub", "serve", "--root", str(root), "--port", "0"]
    for name, token in tokens:
        args += ["--token", f"{name}:{token}:write"]
    args += ["--org", f"{constants['ENTERPRISE_ORG']}:{constants['ENTERPRISE_USER']}"]  # as on staging
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from hubkit.cli import cli; cli(prog_name='hubkit')", *args],
            stderr=out,
            stdout=out,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if m := re.search(r"serving .* at (http://\S+)", log.read_text(errors="replace")):
            return proc, m[1]
        if proc.poll() is not None:
            sys.exit(f"The local Hub did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    proc.kill()
    sys.exit("The local Hub did not start within 60 s")


def read_constants(tests: Path) -> dict[str, str]:
    """The users and tokens of the suite's testing_constants.py (string assignments only)."""
    text = (tests / "testing_constants.py").read_text()
    return dict(re.findall(r'^([A-Z_]+) = "([^"]*)"', text, re.M))


def group_of(nodeid: str) -> str:
    """``file::Class`` for methods, ``file`` for module-level tests."""
    parts = nodeid.split("[")[0].split("::")
    return "::".join(parts[:2]) if len(parts) > 2 else parts[0]


def report(results: dict[str, dict], target: float) -> bool:
    """Print the per-class table, skip reasons and server-touching failures; True if on target."""
    table: dict[str, Counter] = defaultdict(Counter)
    for nodeid, r in results.items():
        row = table[group_of(nodeid)]
        row[r["outcome"]] += 1
        if r.get("touched") and r["outcome"] != "skipped":
            row["server"] += 1
            row["server_passed"] += r["outcome"] == "passed"
    width = max(len(g) for g in table) if table else 10
    print(f"\n{'test class':<{width}}  passed  failed  skipped  server-touching passed")
    for group in sorted(table):
        row = table[group]
        server = f"{row['server_passed']}/{row['server']}" if row["server"] else "-"
        print(f"{group:<{width}}  {row['passed']:>6}  {row['failed']:>6}  {row['skipped']:>7}  {server:>22}")
    totals = sum(table.values(), Counter())
    print(f"{'TOTAL':<{width}}  {totals['passed']:>6}  {totals['failed']:>6}  {totals['skipped']:>7}")

    skipped = Counter(r["reason"] for r in results.values() if r["outcome"] == "skipped")
    print("\nskipped, by reason:")
    for reason, n in skipped.most_common():
        print(f"  {n:>5}  {reason}")
    failures = [(n, r) for n, r in results.items() if r.get("touched") and r["outcome"] == "failed"]
    print(f"\nserver-touching failures ({len(failures)}):")
    for nodeid, r in sorted(failures):
        print(f"  {nodeid}\n      {r['reason']}")
    touched = [r for r in results.values() if r.get("touched") and r["outcome"] != "skipped"]
    passed = sum(r["outcome"] == "passed" for r in touched)
    share = 100 * passed / len(touched) if touched else 0.0
    print(f"\nserver-touching tests passing: {passed} of {len(touched)} ({share:.1f}%; target {target:g}%)")
    return share >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help="use this huggingface_hub sdist instead of downloading it")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (hub data, logs, results)")
    parser.add_argument("--target", type=float, default=98.0, help="percent of server-touching tests to pass")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per test")
    parser.add_argument("targets", nargs="*", help="test files or ids in the suite (default: all of tests/)")
    args = parser.parse_args()

    version = importlib.metadata.version("huggingface_hub")
    work = args.keep or Path(tempfile.mkdtemp(prefix="hfh-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sdist = args.sdist or download_sdist(version, work / "sdist")
        tests = unpack_tests(sdist, work / "suite")
        python = test_python(work, version)
        log, results = work / "hub.log", work / "results.json"
        hub, url = start_hub(work / "hub", log, read_constants(tests))
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
            env.update(
                HF_ENDPOINT=url,
                HF_HOME=str(work / "hf_home"),
                HF_HUB_DISABLE_XET="1",
                HF_TOKEN="",
                HUGGING_FACE_HUB_TOKEN="",
                DISABLE_SYMLINKS_IN_WINDOWS_TESTS="1",
                HFH_SUITE_HUB_URL=url,
                HFH_SUITE_HUB_LOG=str(log),
                HFH_SUITE_RESULTS=str(results),
            )
            print(f"huggingface_hub {version}: its tests against the local Hub at {url}", flush=True)
            pytest = [python, "-m", "pytest", "-q", "-rN", "--tb=no", "-o", "addopts="]
            pytest += ["-p", "no:cacheprovider", "-p", "no:warnings", f"--timeout={args.timeout}"]
            pytest += ["--continue-on-collection-errors"]
            subprocess.run([*pytest, *(args.targets or ["tests"])], cwd=tests.parent, env=env)
        finally:
            hub.terminate()
            hub.wait(30)
        if not results.exists():
            sys.exit("pytest wrote no results; see its output above")
        print(f"huggingface_hub {version} against the local Hub")
        return 0 if report(json.loads(results.read_text()), args.target) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
