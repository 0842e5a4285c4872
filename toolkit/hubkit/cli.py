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


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@click.argument("repo_id")
@click.option("--repo-type", type=click.Choice(["model", "dataset"]), default="model", show_default=True)
@click.option(
    "--private/--public", default=None, help="Visibility when the repo is created (default: public)."
)
@click.option("--revision", default=None, help="Branch to commit to (created if missing). Default: main.")
@click.option("--tag", default=None, help="Tag the resulting commit, e.g. v0.1.0.")
@click.option("--message", default=None, help="Commit message.")
@click.option(
    "--endpoint",
    default=None,
    envvar="HF_ENDPOINT",
    help="Hub URL (default: $HF_ENDPOINT or huggingface.co).",
)
def push(
    folder: str,
    repo_id: str,
    repo_type: str,
    private: bool | None,
    revision: str | None,
    tag: str | None,
    message: str | None,
    endpoint: str | None,
) -> None:
    """Publish FOLDER as the content of REPO_ID, in one commit, then verify it.

    Creates the repo (and branch) if needed, uploads only what changed (an unchanged folder
    makes no commit), deletes remote files the folder no longer has, tags the commit, and
    checks that every remote file's sha256 equals the local one. A folder holding a
    credential (hf_ tokens, API keys, .env, *.pem, .netrc, ...) is refused before anything
    is sent. The token comes from $HF_TOKEN or `hf auth login`.
    """
    from .publish import push_folder

    result = push_folder(
        folder,
        repo_id,
        repo_type=repo_type,  # type: ignore[arg-type]
        private=private,
        revision=revision,
        tag=tag,
        endpoint=endpoint,
        commit_message=message,
    )
    if result.created_commit:
        click.echo(
            f"Pushed {len(result.changed)} file(s) ({result.uploaded_bytes:,} bytes), "
            f"deleted {len(result.deleted)}: {result.url} @ {result.commit[:12]}"
        )
    else:
        click.echo(f"Up to date, no commit made: {result.url} @ {result.commit[:12]}")
    if result.tag:
        click.echo(f"Tagged {result.tag}")
    click.echo(f"Verified {result.files} file(s): remote sha256 equal local.")


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
