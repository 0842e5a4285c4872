"""What hubkit prints: stage lines and bars for a terminal or a log, and the libraries' logging
and warnings quietened only inside hubkit's own command-line runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings

import datasets
import huggingface_hub.utils
import pytest
from transformers.utils import logging as tf_logging

from hubkit.console import NORMAL, QUIET, VERBOSE, Console, cli_run, console

_SNAPSHOT = """
import json, logging, warnings
import numpy, torch, transformers, datasets, huggingface_hub  # a user's program, before hubkit
from datasets.utils import are_progress_bars_disabled as ds_bars
from huggingface_hub.utils import are_progress_bars_disabled as hub_bars
from transformers.utils import logging as tf_logging

def snapshot():
    loggers = logging.root.manager.loggerDict.items()
    return {
        "filters": [repr(f) for f in warnings.filters],
        "levels": {n: lg.level for n, lg in loggers if isinstance(lg, logging.Logger) and lg.level},
        "root": [logging.root.level, len(logging.root.handlers)],
        "bars": [ds_bars(), hub_bars(), tf_logging.is_progress_bar_enabled()],
    }

before = snapshot()
import importlib, pkgutil, hubkit
for module in pkgutil.walk_packages(hubkit.__path__, "hubkit."):
    if module.name != "hubkit.__main__":  # that one runs the command line
        importlib.import_module(module.name)
print(json.dumps([before, snapshot()]))
"""


def test_importing_hubkit_changes_no_warnings_filter_or_logging_level():
    """A user's program that imports every hubkit module keeps its warnings filters, logger
    levels, root handlers and the libraries' progress-bar settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    proc = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = json.loads(proc.stdout.splitlines()[-1])
    assert after == before


def _state() -> tuple:
    return (
        list(warnings.filters),
        tf_logging.get_verbosity(),
        tf_logging.is_progress_bar_enabled(),
        datasets.utils.are_progress_bars_disabled(),
        datasets.utils.logging.get_verbosity(),
        huggingface_hub.utils.are_progress_bars_disabled(),
    )


def test_a_cli_run_quietens_the_libraries_and_puts_them_back():
    before = _state()
    with cli_run(NORMAL) as run:
        assert console() is run and run.level == NORMAL
        assert tf_logging.get_verbosity() == tf_logging.ERROR and not tf_logging.is_progress_bar_enabled()
        assert datasets.utils.are_progress_bars_disabled()
        assert huggingface_hub.utils.are_progress_bars_disabled()
        with warnings.catch_warnings(record=True) as seen:
            deprecated = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
            warnings.warn(deprecated, FutureWarning, stacklevel=1)  # as peft makes transformers say
            warnings.warn("a deprecation of the user's own", FutureWarning, stacklevel=1)
        assert [str(w.message) for w in seen] == ["a deprecation of the user's own"]
    assert _state() == before and console() is not run
    with cli_run(VERBOSE):  # the libraries as they are
        assert tf_logging.get_verbosity() == before[1]
        assert huggingface_hub.utils.are_progress_bars_disabled() == before[5]
    assert _state() == before


def _lines(level: int, interactive: bool) -> str:
    out = io.StringIO()
    con = Console(level, stream=out, interactive=interactive, interval=0)
    con.begin("data-check")
    for _ in con.progress(range(3), desc="Embedding arc", unit="text"):
        pass
    con.end("data-check  ran  1.0s  3 rows")
    con.result("summary")
    return out.getvalue()


def test_on_a_log_a_stage_is_its_result_line_and_bars_become_lines():
    text = _lines(NORMAL, interactive=False)
    assert "\r" not in text and "==>" not in text
    lines = text.splitlines()
    assert lines[-2:] == ["data-check  ran  1.0s  3 rows", "summary"]
    assert lines[:-2] and all(line.startswith("  data-check: Embedding arc: ") for line in lines[:-2])
    assert lines[-3].startswith("  data-check: Embedding arc: 3/3 texts [")


def test_on_a_terminal_a_stage_has_a_header_and_a_live_bar():
    text = _lines(NORMAL, interactive=True)
    assert text.startswith("==> data-check\n") and "\r" in text and "Embedding arc" in text
    assert text.endswith("data-check  ran  1.0s  3 rows\nsummary\n")


@pytest.mark.parametrize("interactive", [False, True])
def test_quiet_prints_only_the_result(interactive):
    assert _lines(QUIET, interactive) == "summary\n"


@pytest.mark.parametrize(
    ("args", "env", "level"),
    [([], "", NORMAL), (["--quiet"], "1", QUIET), (["-v"], "", VERBOSE), ([], "1", VERBOSE)],
)
def test_every_command_takes_verbose_and_quiet(monkeypatch, tmp_path, args, env, level):
    from contextlib import contextmanager

    from hubkit import cli

    levels = []

    @contextmanager
    def recording(run_level):
        levels.append(run_level)
        yield Console(run_level)

    monkeypatch.setattr(cli, "cli_run", recording)
    monkeypatch.setenv("HUBKIT_VERBOSE", env)
    monkeypatch.setattr(sys, "argv", ["hubkit", "card", "dataset", str(tmp_path), *args])
    with pytest.raises(SystemExit):
        cli.main()
    assert levels == [level]


def test_verbose_and_quiet_together_are_refused(monkeypatch, tmp_path, capsys):
    from hubkit import cli

    monkeypatch.setattr(sys, "argv", ["hubkit", "card", "dataset", str(tmp_path), "-v", "-q"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2 and "give --verbose or --quiet, not both" in capsys.readouterr().err


def test_a_push_shows_a_bar_of_the_bytes_sent(local_hub, tmp_path, monkeypatch):
    """While huggingface_hub uploads, a bar counts bytes (it moves as each large file lands) and
    ends at the bytes the push sent, with the rate."""
    from hubkit import console as console_module
    from hubkit.publish import push_folder

    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "README.md").write_text("# bytes\n")
    for i in range(2):
        (folder / f"assets-{i}.tar").write_bytes(os.urandom(1_500_000))
    out = io.StringIO()
    log = Console(NORMAL, stream=out, interactive=False, interval=0)
    monkeypatch.setattr(console_module, "_current", log)
    result = push_folder(folder, "alice/console-bytes")
    sent = [line.split(": ", 1)[1].split(" [")[0] for line in out.getvalue().splitlines()]
    assert "1.50M/3.00MB" in sent and sent[-1] == "3.00M/3.00MB", out.getvalue()
    assert result.uploaded_bytes == 3_000_008 and "B/s]" in out.getvalue().splitlines()[-1]
