"""The local Hub with a large repo: a 20k-file repo after 300 commits, this code against a baseline.

For each code version (this checkout, and a git ref such as ``main`` as the baseline), runs
``hubkit hub serve`` in a subprocess, commits N files (in folders of 100) and then one-file
commits up to C commits in all, and measures:

- bytes added under the Hub's root and seconds taken by one more one-file commit (median of 5);
- after a restart (cold caches), latency of ``commits?limit=1`` and ``tree/main?expand=1``
  (the first page, 50 entries, each with its last commit) and of ``tree/main/FOLDER?expand=1``;
- the server's peak RSS (VmHWM) over the whole run.

    .venv/bin/python tests/benchmarks/bench_hub_scale.py [--files 20000] [--commits 300]
        [--baseline main | --baseline none] [--dir /tmp]

The baseline's old storage rewrites the whole file list on every commit, so its run is slow
(minutes). Not collected by pytest (not a test_*.py file). Targets: < 0.5 s per listing and
peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_hub import RSS_LIMIT_MB  # noqa: E402
from hub_helpers import HubProcess, commit_body  # noqa: E402  (tests/, not a package)

LISTING_LIMIT_S = 0.5
REPO = "hubkit/big"
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


class Server(HubProcess):
    """The server under measure, sent raw HTTP requests (no client library in the timings)."""

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> bytes:
        request = urllib.request.Request(
            f"{self.endpoint}{path}", data=body, method=method, headers=headers or {}
        )
        with urllib.request.urlopen(request, timeout=3600) as response:
            return response.read()


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def run(label: str, toolkit: Path, work: Path, files: int, commits: int) -> dict[str, float]:
    """Build the repo with the code under ``toolkit`` and measure it."""
    server = Server(work / f"hub-{label}", toolkit=toolkit)
    server.start()
    try:
        server.request("POST", "/api/repos/create", json.dumps({"name": REPO.split("/")[1]}).encode(), JSON)
        # 100 distinct contents: the blob store dedups, so the set-up measures trees, not blob writes
        tree = {f"d{i // 100:03d}/f{i % 100:03d}.txt": b"content %d\n" % (i % 100) for i in range(files)}
        t0 = time.perf_counter()
        server.request("POST", f"/api/models/{REPO}/commit/main", commit_body("all files", tree), NDJSON)
        print(f"[{label}] first commit of {files} files: {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        for i in range(commits - 2):  # with the repo's initial commit and the one above: `commits` in all
            path = f"d{i % (files // 100):03d}/f{i % 100:03d}.txt"
            server.request(
                "POST", f"/api/models/{REPO}/commit/main", commit_body(f"c{i}", {path: b"v%d" % i}), NDJSON
            )
            if i % 50 == 49:
                print(f"[{label}] {i + 3} commits, {time.perf_counter() - t0:.0f} s", flush=True)
        seconds, added = [], []
        for i in range(5):
            before = _disk_bytes(server.root)
            body = commit_body(f"timed {i}", {f"d001/f{i:03d}.txt": b"timed %d" % i})
            seconds.append(
                _timed(lambda b=body: server.request("POST", f"/api/models/{REPO}/commit/main", b, NDJSON))
            )
            added.append(_disk_bytes(server.root) - before)
        server.kill()
        server.start()  # cold: nothing cached
        api = f"/api/models/{REPO}"
        history = _timed(lambda: server.request("GET", f"{api}/commits/main?limit=1"))
        tree_root = _timed(lambda: server.request("GET", f"{api}/tree/main?expand=1"))
        tree_folder = _timed(lambda: server.request("GET", f"{api}/tree/main/d007?expand=1"))
        server.kill()
    finally:
        server.kill()
    return {
        "commit_s": statistics.median(seconds),
        "commit_bytes": statistics.median(added),
        "commits_limit1_s": history,
        "tree_expand_s": tree_root,
        "tree_folder_expand_s": tree_folder,
        "peak_rss_mb": server.peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000, help="files in the repo (default 20000)")
    parser.add_argument("--commits", type=int, default=300, help="commits before measuring (default 300)")
    parser.add_argument(
        "--baseline", default="main", help="git ref to compare with, or 'none' (default main)"
    )
    parser.add_argument("--dir", default=None, help="scratch folder (default: the system temp folder)")
    args = parser.parse_args()
    repo_root = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="bench-hub-scale-", dir=args.dir))
    try:
        results = {"now": run("now", repo_root / "toolkit", work, args.files, args.commits)}
        if args.baseline != "none":
            archive = subprocess.run(
                ["git", "-C", str(repo_root), "archive", args.baseline, "toolkit"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
            results[args.baseline] = run(args.baseline, work / "toolkit", work, args.files, args.commits)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.files} files, {args.commits} commits")
    names = list(results)
    rows = [
        ("one-file commit, seconds (median of 5)", "commit_s", "{:.3f}"),
        ("one-file commit, bytes written", "commit_bytes", "{:,.0f}"),
        ("commits?limit=1, seconds (cold)", "commits_limit1_s", "{:.3f}"),
        ("tree/main?expand=1, seconds (cold)", "tree_expand_s", "{:.3f}"),
        ("tree/main/d007?expand=1, seconds", "tree_folder_expand_s", "{:.3f}"),
        ("server peak RSS, MB", "peak_rss_mb", "{:.0f}"),
    ]
    print(f"{'':<42}" + "".join(f"{n:>14}" for n in names) + (f"{'ratio':>10}" if len(names) == 2 else ""))
    for title, key, fmt in rows:
        values = [results[n][key] for n in names]
        ratio = f"{values[1] / values[0]:>9.1f}x" if len(values) == 2 and values[0] else ""
        print(f"{title:<42}" + "".join(f"{fmt.format(v):>14}" for v in values) + ratio)
    now = results["now"]
    listings = max(now["commits_limit1_s"], now["tree_expand_s"], now["tree_folder_expand_s"])
    ok = listings < LISTING_LIMIT_S and now["peak_rss_mb"] < RSS_LIMIT_MB
    print(
        f"targets: listings < {LISTING_LIMIT_S} s (slowest {listings:.3f} s), peak RSS < {RSS_LIMIT_MB} MB "
        f"({now['peak_rss_mb']:.0f} MB): {'OK' if ok else 'MISSED'}"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
