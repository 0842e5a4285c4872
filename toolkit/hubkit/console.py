"""What a hubkit command prints: one line per stage, progress bars, and how loud the libraries are.

A stage shows a header and a live bar on a terminal, then one result line; on a log (stdout
not a TTY, as in CI) the header is left out and a bar becomes an indented line at most every
``interval`` seconds, so a stage that ends sooner prints just its result line. ``quiet`` keeps
only what a command prints through ``Console.result`` (its summary) and errors; ``verbose``
leaves the libraries' own logging, bars and warnings as they are.

Quieting the libraries is scoped to ``cli_run``, which the command line enters around a
command: importing hubkit changes no warnings filter, logger level or progress-bar setting.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from transformers import Trainer, TrainerCallback

VERBOSE_ENV = "HUBKIT_VERBOSE"
QUIET, NORMAL, VERBOSE = 0, 1, 2
INTERVAL_S = 30.0  # between a bar's lines on a log
# Warnings the libraries raise on hubkit's runs that hubkit cannot fix at their cause:
# (message regex, category, why).
LIBRARY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (
        r"`is_gradient_checkpointing` is deprecated",
        FutureWarning,
        "peft reads the deprecated property of every transformers 5 model it wraps",
    ),
)
# Read by libraries as they are imported, for those first imported inside a run.
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
# Loggers of libraries that log progress or advice at INFO/WARNING level on hubkit's runs.
_LIBRARY_LOGGERS = ("sentence_transformers", "accelerate", "peft", "trl", "torch.distributed", "lm_eval")


def verbose_from_env() -> bool:
    """Whether HUBKIT_VERBOSE asks for the libraries' own output (1, true, yes)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Console:
    """Where a command's lines and bars go, and how many of them."""

    level: int = NORMAL
    stream: TextIO | None = None  # None: sys.stdout when printing (so a captured stdout is used)
    interactive: bool | None = None  # None: whether the stream is a terminal
    interval: float = INTERVAL_S
    stage: str | None = field(default=None, init=False)

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def is_interactive(self) -> bool:
        if self.interactive is not None:
            return self.interactive
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    @property
    def verbose(self) -> bool:
        return self.level >= VERBOSE

    def line(self, text: str) -> None:
        """An informative line (not in quiet mode)."""
        if self.level > QUIET:
            print(text, file=self.out, flush=True)

    def result(self, text: str) -> None:
        """What the command is for (its summary): printed even in quiet mode."""
        print(text, file=self.out, flush=True)

    def debug(self, text: str) -> None:
        """A detail worth a line only with --verbose."""
        if self.verbose:
            self.line(text)

    def begin(self, name: str) -> None:
        """A stage starts: a header on a terminal (a log gets the result line only)."""
        self.stage = name
        if self.is_interactive or self.verbose:
            self.line(f"==> {name}")

    def end(self, text: str) -> None:
        """A stage's result line."""
        self.stage = None
        self.line(text)

    def progress(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        **kwargs: Any,
    ) -> Any:
        """A tqdm bar on a terminal, periodic lines on a log, nothing in quiet mode."""
        from tqdm.auto import tqdm

        if self.level == QUIET or kwargs.pop("disable", False):
            return tqdm(iterable, total=total, desc=desc, disable=True, **kwargs)
        if self.is_interactive:
            return tqdm(
                iterable, total=total, desc=desc, leave=False, file=self.out, dynamic_ncols=True, **kwargs
            )
        prefix = f"{self.stage}: " if self.stage and self.stage != desc else ""
        units = "{unit}" if kwargs.get("unit_scale") else " {unit}s"  # 1.2M/4.6MB; 3/60 steps
        return tqdm(
            iterable,
            total=total,
            desc=prefix + desc,
            file=_LogLines(self.out, self.interval),
            delay=self.interval,
            mininterval=self.interval,
            maxinterval=self.interval,
            leave=False,
            bar_format="{desc}: {n_fmt}/{total_fmt}" + units + " [{elapsed}, {rate_fmt}{postfix}]",
            **kwargs,
        )

    def show_training(self, trainer: Trainer) -> None:
        """Give ``trainer`` one bar of steps with the latest loss and tokens/s in place of
        transformers' own, which prints every log entry as a dict (kept with --verbose; the
        entries still reach ``log_history``, hence metrics.json and the loss plot)."""
        if self.verbose:
            return
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_training_progress(self))


class _LogLines:
    """A file for tqdm that turns a refresh (``\\r`` + text) into one line of a log, at most one
    per ``interval`` (tqdm's monitor thread and its miniters tuning refresh in between)."""

    def __init__(self, out: TextIO, interval: float) -> None:
        self.out, self.interval = out, interval
        self.last = -float("inf")

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        now = time.monotonic()
        if text and now - self.last >= self.interval:
            self.out.write(f"  {text}\n")
            self.last = now

    def flush(self) -> None:
        self.out.flush()


def _training_progress(console: Console) -> TrainerCallback:
    from transformers import TrainerCallback

    class HubkitTrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Any = None
            self.started = 0.0
            self.tokens_before = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self.bar = console.progress(
                    total=state.max_steps, initial=state.global_step, desc="train", unit="step"
                )
                self.started, self.tokens_before = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                seconds = max(time.perf_counter() - self.started, 1e-9)
                rate = (state.num_input_tokens_seen - self.tokens_before) / seconds
                loss = float(logs["loss"])
                self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} tokens/s", refresh=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return HubkitTrainingProgress()


_current = Console()


def console() -> Console:
    """The console of the command running (a default one outside the command line)."""
    return _current


@contextmanager
def cli_run(level: int = NORMAL) -> Iterator[Console]:
    """The console for one command-line run: below ``VERBOSE``, the libraries' INFO/WARNING
    logging, their progress bars and the warnings in ``LIBRARY_WARNINGS`` are silenced, and
    everything is put back as it was when the run ends."""
    global _current
    previous, _current = _current, Console(level)
    try:
        if level >= VERBOSE:
            yield _current
            return
        with warnings.catch_warnings(), _libraries_quiet():
            for message, category, _ in LIBRARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield _current
    finally:
        _current = previous


@contextmanager
def _libraries_quiet() -> Iterator[None]:
    """Libraries already imported are quietened through their API; those imported during the
    run read ``_QUIET_ENV``, as a fresh command-line process does. All is restored after."""
    from huggingface_hub import utils as hub_utils

    env = {key: os.environ.get(key) for key in _QUIET_ENV}
    hub_bars = not hub_utils.are_progress_bars_disabled()
    levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
    saved = {name: quiet() for name, quiet in _QUIETERS.items() if name in sys.modules}
    os.environ.update(_QUIET_ENV)
    hub_utils.disable_progress_bars()
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if hub_bars:
            hub_utils.enable_progress_bars()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for restore in saved.values():
            restore()


def _quiet(
    logs: Any, bars_on: bool, enable: Callable[[], None], disable: Callable[[], None]
) -> Callable[[], None]:
    """Set a library's verbosity to ERROR and its bars off; returns what puts both back."""
    level = logs.get_verbosity()
    logs.set_verbosity_error()
    disable()

    def restore() -> None:
        logs.set_verbosity(level)
        if bars_on:
            enable()

    return restore


def _quiet_transformers() -> Callable[[], None]:
    from transformers.utils import logging as tf

    return _quiet(tf, tf.is_progress_bar_enabled(), tf.enable_progress_bar, tf.disable_progress_bar)


def _quiet_datasets() -> Callable[[], None]:
    from datasets import utils
    from datasets.utils import logging as ds

    bars_on = not utils.are_progress_bars_disabled()
    return _quiet(ds, bars_on, utils.enable_progress_bars, utils.disable_progress_bars)


_QUIETERS = {"transformers": _quiet_transformers, "datasets": _quiet_datasets}
