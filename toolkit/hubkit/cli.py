"""The ``hubkit`` command line: a thin click layer over the Python API.

Each command parses its options and calls one API function. Heavy libraries (torch,
transformers, datasets) are imported inside the commands so ``hubkit --help`` stays fast,
and so ``--endpoint`` can configure the Hub clients before they are imported.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import HubkitError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hubkit")
def cli() -> None:
    """hubkit: curate leak-free instruction data, train LoRA adapters, merge behind
    verification gates and publish to the Hugging Face Hub (the Platypus recipe).

    Every stage reads and writes an artifact folder with a manifest.json, so each command
    can run alone, be resumed, or be re-run in CI. Set HF_ENDPOINT (or pass --endpoint)
    to publish to a Hub other than huggingface.co, such as `hubkit hub serve`.
    """


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except HubkitError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
