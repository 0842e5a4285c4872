"""The ``hubkit`` command line: a thin click layer over the Python API.

Each command parses its options and calls one API function. Heavy libraries (torch,
transformers, datasets) are imported inside the commands so ``hubkit --help`` stays fast,
and so ``--endpoint`` can configure the Hub clients before they are imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import click

from . import __version__
from .benchmarks import BENCHMARKS
from .console import NORMAL, QUIET, VERBOSE, cli_run, console, verbose_from_env
from .errors import HubkitError
from .methods import MERGE_METHODS, MODEL_MERGES

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo


class _Command(click.Command):
    """A hubkit command: ``--verbose`` / ``--quiet``, and its run inside ``console.cli_run``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(
                ["-v", "--verbose"],
                is_flag=True,
                help="Show the libraries' own logging, progress bars and warnings (also HUBKIT_VERBOSE=1).",
            ),
            click.Option(["-q", "--quiet"], is_flag=True, help="Print only the result and errors."),
        ]

    def invoke(self, ctx: click.Context) -> Any:
        verbose, quiet = ctx.params.pop("verbose"), ctx.params.pop("quiet")
        if verbose and quiet:
            raise click.UsageError("give --verbose or --quiet, not both")
        level = QUIET if quiet else VERBOSE if verbose or verbose_from_env() else NORMAL
        with cli_run(level):
            return super().invoke(ctx)


class _Lazy(click.ParamType):
    """A parameter type made when first used (a value parsed, the help shown), so building the
    CLI does not import what it is made from."""

    def __init__(self, make: Callable[[], click.ParamType]) -> None:
        self._make = make

    @cached_property
    def _type(self) -> click.ParamType:
        return self._make()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._type.name

    def __getattr__(self, attr: str) -> Any:  # e.g. a Choice's choices
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._type, attr)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return self._type.get_metavar(param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self._type.convert(value, param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        return self._type.shell_complete(ctx, param, incomplete)


class _RecipeOption(click.Option):
    """A flag for the recipe field ``section.field`` (a section class of recipe.py, by name), made
    from the model as mergekit makes its flags from ``MergeOptions``: the help is the field's
    description (written once, in the recipe), or ``help`` when given, with its default; a
    ``Literal`` field's values are the choices. The model is read when the help is shown or a
    value parsed: importing the recipe module (pydantic) as the CLI loads would slow every
    command's start. ``or_recipe``: the flag defaults to None so a recipe's value, where the
    command reads one, wins over the model's default."""

    def __init__(
        self,
        decls: Sequence[str],
        *,
        section: str,
        field: str,
        prefix: str = "",
        or_recipe: bool = True,
        help: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._section, self._field, self._prefix, self._or_recipe = section, field, prefix, or_recipe
        self._text = help
        kwargs.setdefault("type", _Lazy(self._choice))
        super().__init__(decls, default=None if or_recipe else self._default, **kwargs)

    def _info(self) -> FieldInfo:
        from . import recipe

        return getattr(recipe, self._section).model_fields[self._field]

    def _default(self) -> Any:
        from . import recipe

        return recipe.default(getattr(recipe, self._section), self._field)

    def _choice(self) -> click.ParamType:
        annotation = self._info().annotation
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        return click.Choice(get_args(annotation)) if get_origin(annotation) is Literal else click.STRING

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        value = self._default()
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        where = ", or the recipe's" if self._or_recipe else ""
        text = self._text or self._info().description or ""
        text = self._prefix + text[:1].lower() + text[1:] if self._prefix else text
        self.help = f"{text} [default: {'none' if shown in (None, '') else shown}{where}]."
        return super().get_help_record(ctx)


def _recipe_option(section: str, field: str, *decls: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A ``_RecipeOption`` for ``section.field`` (see there)."""
    return click.option(*decls, cls=_RecipeOption, section=section, field=field, **kwargs)


class _StageName(click.ParamType):
    """A train-and-push stage (``pipeline.STAGES``), read when the option is shown or parsed:
    importing the pipeline when the CLI loads would slow every command's start."""

    name = "stage"

    def _stages(self) -> tuple[str, ...]:
        from .pipeline import STAGES

        return STAGES

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self._stages()) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value not in self._stages():
            self.fail(f"{value!r} is not a stage ({', '.join(self._stages())})", param, ctx)
        return value


class _Group(click.Group):
    command_class = _Command
    group_class = type  # subgroups are _Group too


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Publish symbolic links as the files they point to, if those are inside FOLDER "
    "(default: refuse any link).",
)
@click.option(
    "--no-gate",
    is_flag=True,
    help="Publish model weights or data that no hubkit gate can check (no hubkit manifest.json); "
    "the commit message and the card say so.",
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
    follow_symlinks: bool,
    no_gate: bool,
) -> None:
    """Publish FOLDER as the content of REPO_ID, in one commit, then verify it.

    Creates the repo (and branch) if needed, uploads only what changed (an unchanged folder
    makes no commit), deletes remote files the folder no longer has, tags the commit, and
    checks that every remote file's sha256 equals the local one. A folder holding a
    credential (hf_ tokens, API keys, .env, *.pem, .netrc, ...) is refused before anything
    is sent, as is a symbolic link. A hubkit artifact passes its kind's gate first, its claims
    recomputed from its files: a dataset's data hash and leak certificate, an adapter's
    certificate against the dataset it names, a merged model's equivalence check covering every
    file. The token comes from $HF_TOKEN or `hf auth login`.
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
        follow_symlinks=follow_symlinks,
        no_gate=no_gate,
    )
    if result.gate:
        click.echo(f"Gate: {result.gate}")
    elif no_gate:
        click.echo("No gate (--no-gate): the commit message and the card say so.")
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


@cli.group()
def hub() -> None:
    """A local Hugging Face Hub: repos on disk behind the Hub's HTTP API, for offline use and CI."""


def _parse_token(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
    from .hub import Token

    try:
        return [Token.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _parse_orgs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    from .hub.auth import parse_org

    try:
        return dict(parse_org(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@hub.command()
@click.option(
    "--root",
    default="./hub-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder holding the repos (created if missing).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    callback=_parse_token,
    metavar="NAME:TOKEN:read|write",
    envvar="HUBKIT_HUB_TOKENS",
    help="Accept this access token for user NAME (repeatable; or space-separated in $HUBKIT_HUB_TOKENS, "
    "which `ps` does not show). Without any token the Hub is open: every caller is user 'hubkit' with "
    "write access to every namespace.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Read more tokens from this file, one NAME:TOKEN:read|write a line ('#' starts a comment).",
)
@click.option(
    "--org",
    "orgs",
    multiple=True,
    callback=_parse_orgs,
    metavar="ORG:USER1,USER2",
    envvar="HUBKIT_HUB_ORGS",
    help="An organisation and its members (repeatable; or space-separated in $HUBKIT_HUB_ORGS). A user "
    "writes in its own namespace and its organisations' only, and sees their private repos only.",
)
def serve(root: str, host: str, port: int, tokens: list, token_file: str | None, orgs: dict) -> None:
    """Serve a Hub-compatible API until Ctrl-C.

    Point the stock clients at it with HF_ENDPOINT=http://HOST:PORT and HF_HUB_DISABLE_XET=1
    (the local Hub speaks plain LFS); huggingface_hub, datasets, transformers and peft then
    push and pull unmodified. Commits are atomic, also across a crash of the server.
    """
    import logging

    from .hub import LocalHub
    from .hub.auth import load_token_file

    if token_file:
        try:
            tokens = [*tokens, *load_token_file(token_file)]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--token-file") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        server = LocalHub(root, host=host, port=port, tokens=tokens, orgs=orgs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    mode = f"{len(tokens)} token(s)" if tokens else "open: everyone writes as 'hubkit'"
    click.echo(f"Local Hub on {root} ({mode}). Ctrl-C stops it.", err=True)
    if not tokens and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            "Note: an open Hub answers only requests addressed to localhost, 127.0.0.1 or a specific "
            "--host address; give --token (or --token-file) to share it with a team.",
            err=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
@click.option(
    "--dataset",
    default=None,
    help="Dataset artifact folder or Hub dataset id (default: data.dataset, else runs/<name>/dataset-clean).",
)
@click.option("--out", default=None, help="Adapter folder (default: runs/<name>/adapter).")
@click.option(
    "--allow-unchecked-data",
    is_flag=True,
    help="Train on data without a passing leak certificate; recorded in the provenance and the card.",
)
@click.option("--force", is_flag=True, help="Retrain even when the adapter is up to date.")
def train(
    recipe: str,
    overrides: tuple[str, ...],
    dataset: str | None,
    out: str | None,
    allow_unchecked_data: bool,
    force: bool,
) -> None:
    """Train the LoRA adapter of RECIPE on a checked dataset artifact (TRL SFTTrainer + peft).

    The Alpaca prompt, loss on the response only, EOS appended; the recipe's `training` section
    is TRL's SFTConfig. Writes the adapter, tokenizer, metrics.json and provenance.json (base
    model hashes, dataset hash, leak certificate, recipe, versions). Data without a passing leak
    certificate is refused. An interrupted run resumes from its last checkpoint; works under
    `accelerate launch` (only the main process writes).
    """
    from .recipe import load_recipe
    from .train import train as run_training

    run_training(
        load_recipe(recipe, list(overrides)),
        dataset=dataset,
        out=out,
        allow_unchecked_data=allow_unchecked_data,
        force=force,
        echo=click.echo,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _WeightsCommand(_Command):
    """Lets ``--weights`` and ``--density`` take one number per model (``--weights 0.6 0.4``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        joined, i = [], 0
        while i < len(args):
            joined.append(args[i])
            i += 1
            if joined[-1] in ("--weights", "--density"):
                values = []
                while i < len(args) and _is_number(args[i]):
                    values.append(args[i])
                    i += 1
                joined.append(",".join(values))
        return super().parse_args(ctx, joined)


def _parse_weights(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[float]:
    items = [v for value in values for v in value.split(",")]
    if not all(_is_number(v) for v in items):
        raise click.BadParameter(f"expected numbers, got {' '.join(values)!r}")
    return [float(v) for v in items]


def _merge_options(func):
    """The options every merge shares: the taint gate's inputs and the output shard size."""
    options = [
        click.option(
            "--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Output folder."
        ),
        click.option(
            "--allow-unverified",
            multiple=True,
            metavar="ID",
            help="Merge this input although its provenance is unknown (recorded in the provenance and card).",
        ),
        click.option(
            "--registry",
            "registries",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=str),
            help="Extra taint registry YAML, added to the built-in one (hubkit/taint_registry.yaml).",
        ),
        click.option(
            "--max-shard-size",
            default=None,
            help="Split output shards above this size, e.g. 2GB (default: as the source).",
        ),
        click.option(
            "--recipe",
            "recipe_path",
            default=None,
            type=click.Path(dir_okay=False, path_type=str),
            help="Recipe to record: its merge.taint_registry joins the gate, and its hub section "
            "(merged_repo, license, tags) is what `hubkit card merged` writes.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _merge_recipe(recipe_path: str | None, registries: tuple[str, ...]) -> dict[str, Any]:
    """The gate's registry and the recipe to record, from --registry and --recipe."""
    from .merge import load_registry
    from .recipe import load_recipe

    if recipe_path is None:
        return {"registry": load_registry(registries), "recipe": None}
    recipe = load_recipe(recipe_path)
    return {"registry": load_registry(registries, recipe.merge.taint_registry), "recipe": recipe.to_dict()}


def _report_merge(folder) -> None:
    from .schemas import MergedProvenance

    provenance = MergedProvenance.read(folder)
    click.echo(f"Merged ({provenance.method}) into {folder}")
    for record in provenance.taint_gate.inputs:
        click.echo(f"  {record.id}: {record.verdict} ({record.reason})")
    click.echo(f"Next: hubkit verify merge {folder}")


@cli.group()
def merge() -> None:
    """Merge behind the taint gate: a LoRA adapter into its base, or whole models together.

    Before anything is written, every input's lineage (hubkit provenance.json, or model card
    metadata listing its training datasets) is checked against the taint registry; unknown
    provenance is refused unless --allow-unverified names the model. Merges stream one tensor
    at a time and appear only when complete.
    """


@merge.command("adapter")
@click.argument("adapter")
@click.option("--base", default=None, help="Base model folder or Hub id (default: the adapter's base model).")
@click.option("--base-revision", default=None, help="Hub revision of the base (default: the adapter's).")
@_merge_options
def merge_adapter_command(
    adapter: str,
    base: str | None,
    base_revision: str | None,
    out: str,
    allow_unverified: tuple[str, ...],
    registries: tuple[str, ...],
    max_shard_size: str | None,
    recipe_path: str | None,
) -> None:
    """Fold the LoRA ADAPTER (folder or Hub id) into its base: W += B·A·alpha/r, in fp32.

    The output keeps the base's dtype and shards, with its config, generation config and
    tokenizer, and a provenance.json recording base, adapter and the gate's verdicts.
    """
    from .merge import merge_adapter

    folder = merge_adapter(
        adapter,
        out,
        base=base,
        base_revision=base_revision,
        allow_unverified=allow_unverified,
        max_shard_size=max_shard_size,
        **_merge_recipe(recipe_path, registries),
    )
    _report_merge(folder)


@merge.command("models", cls=_WeightsCommand)
@click.argument("models", nargs=-1)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=str),
    help="A mergekit YAML configuration, run unchanged by mergekit (instead of MODELS and the flags); "
    "its local model folders are relative to the file.",
)
@click.option(
    "--weights",
    multiple=True,
    callback=_parse_weights,
    metavar="W1 W2 ...",
    help="One weight per model (default: 1 each).",
)
@_recipe_option(
    "MergeSection",
    "method",
    "--method",
    type=click.Choice(MODEL_MERGES),
    or_recipe=False,
    help="; ".join(f"{name}: {MERGE_METHODS[name].formula}" for name in MODEL_MERGES)
    + ". Run by hubkit's streaming merge: "
    + ", ".join(m for m in MODEL_MERGES if MERGE_METHODS[m].engine == "hubkit")
    + "; by mergekit: the others.",
)
@click.option(
    "--base",
    default=None,
    help="Base model for "
    + " or ".join(m for m in MODEL_MERGES if MERGE_METHODS[m].needs_base)
    + " (its task vectors start here).",
)
@click.option(
    "--density",
    "densities",
    multiple=True,
    callback=_parse_weights,
    metavar="D",
    help="Fraction of each delta kept (TIES, DARE, breadcrumbs, DELLA): one, or one per model.",
)
@click.option("--t", "t", type=float, default=None, help="SLERP's point: 0 is --base, 1 the model.")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of a random method's masks (DARE, DELLA; default 0), recorded for the verification; "
    "refused for other methods.",
)
@_merge_options
def merge_models_command(
    models: tuple[str, ...],
    config_path: str | None,
    weights: list[float],
    method: str,
    base: str | None,
    densities: list[float],
    t: float | None,
    seed: int | None,
    out: str,
    allow_unverified: tuple[str, ...],
    registries: tuple[str, ...],
    max_shard_size: str | None,
    recipe_path: str | None,
) -> None:
    """Merge MODELS (folders or Hub ids) of one architecture by --method, or run a mergekit --config.

    Every model named (in a config: models, base_model, slices) passes the taint gate, and
    different architectures or shapes are refused, before anything is written.
    """
    from .merge import merge_config, merge_models

    shared = dict(
        allow_unverified=allow_unverified,
        max_shard_size=max_shard_size,
        seed=seed,
        **_merge_recipe(recipe_path, registries),
    )
    if config_path:
        if models:
            raise HubkitError("--config: give either MODELS and flags or a mergekit configuration, not both")
        folder = merge_config(config_path, out, **shared)
    elif not models:
        raise HubkitError("merge models: give MODELS or --config MERGE.yaml")
    else:
        folder = merge_models(
            models, out, weights=weights, method=method, base=base, densities=densities, t=t, **shared
        )
    _report_merge(folder)


@cli.group()
def verify() -> None:
    """Check an artifact against what it was made from."""


@verify.command("merge")
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
def verify_merge_command(folder: str) -> None:
    """Check the merged model in FOLDER; publishing refuses a merged model without a pass.

    An adapter merge must give base + adapter's logits on fixed probe prompts (max |diff|
    within a dtype tolerance), keep tensor names, shapes and dtypes, and leave every tensor
    the adapter does not touch bit-identical. The result goes to verification.json and the
    manifest.
    """
    from .merge import verify_merge

    result = verify_merge(folder)
    if not result["passed"]:
        more = len(result["problems"]) - 1
        extra = f" (+{more} more in verification.json)" if more else ""
        raise HubkitError(f"{folder}: equivalence check failed: {result['problems'][0]}{extra}")
    if result["max_abs_logit_diff"] is None:
        click.echo(f"Verified {folder}: structure matches, logits finite on {len(result['probes'])} probes.")
    else:
        click.echo(
            f"Verified {folder}: max |logit diff| {result['max_abs_logit_diff']:.3g} <= "
            f"{result['tolerance']:.3g} ({result['dtype']}); "
            f"{result['untouched_tensors_checked']} untouched tensors bit-identical."
        )


def _benchmark_files(items: tuple[str, ...], option: str = "--benchmark-file") -> dict[str, str]:
    """--benchmark-file NAME=PATH options (or another NAME=PATH option) as a mapping, in order."""
    files = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise HubkitError(f"{option} {item!r}: expected NAME=PATH")
        files[name] = path
    return files


def _report_claims(source: str, claims: list) -> None:
    """Print the claim table; any claim that does not hold is a one-line error and exit 1."""
    from .proofs import render

    click.echo(render(claims))
    wrong = [c.name for c in claims if not c.ok]
    if wrong:
        raise HubkitError(f"{source}: {len(wrong)} claim(s) do not hold: {', '.join(wrong)}")
    click.echo(f"All {len(claims)} claims of {source} recomputed and hold.")


_REVISION = click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of SOURCE.")


@verify.command("dataset")
@click.argument("source")
@_REVISION
@click.option(
    "--benchmark-file",
    "benchmark_files",
    multiple=True,
    metavar="NAME=PATH",
    help="A benchmark the certificate names by a local file name: where that file is here.",
)
def verify_dataset_command(source: str, revision: str | None, benchmark_files: tuple[str, ...]) -> None:
    """Re-derive a published dataset's claims: SOURCE is a dataset folder or Hub dataset id.

    Hashes data.parquet and every file again, reloads the benchmarks the leak certificate names
    (their files or Hub revisions) and compares their hashes, and re-runs the leak check with the
    certificate's embedding model and threshold: no leaking row may be left. Prints claim /
    claimed / recomputed / ok; exits 1 on any mismatch.
    """
    from .proofs import verify_dataset

    _report_claims(source, verify_dataset(source, revision, _benchmark_files(benchmark_files)))


@verify.command("adapter")
@click.argument("source")
@_REVISION
@click.option("--dataset", default=None, help="The dataset it was trained on: folder or Hub dataset id.")
@click.option("--dataset-revision", default=None, help="Hub revision of --dataset.")
def verify_adapter_command(
    source: str, revision: str | None, dataset: str | None, dataset_revision: str | None
) -> None:
    """Re-derive a published adapter's claims: SOURCE is an adapter folder or Hub model id.

    Hashes every file again against its manifest, and checks that the leak certificate its
    provenance carries is the published dataset's, for that dataset's data (hashed again).
    Without --dataset, the dataset is looked up where this machine trained on it.
    """
    from .proofs import verify_adapter

    _report_claims(source, verify_adapter(source, dataset, revision, dataset_revision))


@verify.command("merged")
@click.argument("source")
@_REVISION
def verify_merged_command(source: str, revision: str | None) -> None:
    """Re-derive a published merged model's claims: SOURCE is a merged folder or Hub model id.

    Hashes every file again, then re-runs the equivalence check (base + adapter through peft
    against the merged weights, on fixed probes) on a scratch copy, with the inputs its
    provenance names (Hub id + revision, or where this machine has them), and compares it
    with the recorded one. SOURCE itself is never written.
    """
    from .proofs import verify_merged

    _report_claims(source, verify_merged(source, revision))


@cli.group()
def card() -> None:
    """Write an artifact's Hub card (README.md) from its manifests: every fact on it is measured.

    A field the card needs but the artifact lacks is a one-line error naming the file and
    the field; no card is written with a blank.
    """


_eval_results_option = click.option(
    "--eval-results",
    type=click.Path(path_type=str),
    default=None,
    help="A `hubkit eval` folder or an lm-eval-harness results JSON: the leaderboard scores ("
    + ", ".join(f"{b.title} {b.leaderboard.shots}-shot" for b in BENCHMARKS.values())
    + ") go into the card and its model-index.",
)


def _write_card(kind: str, artifact: str, eval_results: str | None = None) -> None:
    from .cards import write_card

    click.echo(f"Wrote {write_card(kind, artifact, eval_results)}")  # type: ignore[arg-type]


@card.command("dataset")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=str))
def card_dataset(artifact: str) -> None:
    """Card of a checked dataset: sources, dedup, contamination summary, leak certificate, schema."""
    _write_card("dataset", artifact)


@card.command("adapter")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=str))
@_eval_results_option
def card_adapter(artifact: str, eval_results: str | None) -> None:
    """Card of a trained adapter: base, recipe, trainable %, loss plot, hardware, leak certificate."""
    _write_card("adapter", artifact, eval_results)


@card.command("merged")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=str))
@_eval_results_option
@click.option(
    "--compare",
    multiple=True,
    metavar="LABEL=PATH",
    help="Another model's scores (`hubkit eval` folder or lm-eval results JSON) in a column beside "
    "--eval-results, e.g. base=runs/eval/base; repeatable, columns in this order. Not in model-index.",
)
def card_merged(artifact: str, eval_results: str | None, compare: tuple[str, ...]) -> None:
    """Card of a merged model: every input's provenance and taint-gate verdict, the equivalence
    check, and any --allow-* override at the top."""
    from .cards import write_card

    pairs = _benchmark_files(compare, "--compare")
    click.echo(f"Wrote {write_card('merged', artifact, eval_results, pairs)}")


@cli.group()
def data() -> None:
    """Build an Alpaca dataset from a recipe's sources, and check it against benchmark test sets."""


@data.command("build")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
@click.option("--out", default=None, help="Dataset folder (default: runs/<name>/dataset).")
@click.option("--force", is_flag=True, help="Rebuild even if the artifact is up to date.")
def data_build(recipe: str, overrides: tuple[str, ...], out: str | None, force: bool) -> None:
    """Assemble RECIPE's data.sources into one dataset artifact (data.parquet + manifest.json).

    Each source (Hub dataset or local jsonl/json/csv/parquet) is mapped to instruction/input/
    output through its `columns`, tagged with data_source; empty rows, exact duplicates (the
    longest output kept) and near duplicates (embedding cosine >= data.dedup.near_threshold)
    are dropped. The same inputs give a byte-identical data.parquet; an artifact already
    built from them is kept.
    """
    from .artifacts import read_manifest
    from .data import build_dataset
    from .recipe import load_recipe

    folder = build_dataset(load_recipe(recipe, list(overrides)), out, force=force)
    manifest = read_manifest(folder, "dataset")
    dedup = manifest["dedup"]
    click.echo(
        f"Built {folder}: {manifest['rows']} rows from {len(manifest['sources'])} source(s) "
        f"({dedup['rows_in']} read, {dedup['removed_exact']} exact and {dedup['removed_near']} near "
        "duplicates removed)."
    )


@data.command("check")
@click.argument("dataset")
@_recipe_option("DecontamSection", "benchmarks", "--benchmarks", prefix="Comma-separated: ")
@click.option(
    "--platypus",
    is_flag=True,
    help="The paper's method instead: one cosine cut (--threshold) on the question alone.",
)
@_recipe_option("DecontamSection", "threshold", "--threshold", type=float, prefix="With --platypus: ")
@click.option(
    "--columns",
    default=None,
    metavar="FIELD=COLUMN,...",
    help="File or Hub dataset: instruction=...,input=...,output=... [default: guessed from common names].",
)
@click.option("--config", default=None, help="Hub dataset: the config to load.")
@click.option("--split", default="train", show_default=True, help="Hub dataset: the split to check.")
@click.option("--revision", default=None, help="Hub dataset: a branch, tag or commit.")
@_recipe_option("DecontamSection", "keep", "--keep", multiple=True, prefix="Repeatable: ")
@_recipe_option("DataSection", "embedding_model", "--model")
@click.option(
    "--benchmark-file",
    "benchmark_files",
    multiple=True,
    metavar="NAME=PATH",
    help="Load a benchmark from a local file or folder (or hub:ID[@REVISION]) instead of its Hub split.",
)
@click.option("--out", default=None, help="Write the cleaned dataset artifact here.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
@click.option("--force", is_flag=True, help="Check again even if --out is up to date.")
def data_check(
    dataset: str,
    benchmarks: str | None,
    platypus: bool,
    threshold: float | None,
    columns: str | None,
    config: str | None,
    split: str,
    revision: str | None,
    keep: tuple[str, ...],
    model: str | None,
    benchmark_files: tuple[str, ...],
    out: str | None,
    overrides: tuple[str, ...],
    force: bool,
) -> None:
    """Compare every question of DATASET with every benchmark test question (embedding cosine).

    DATASET is a dataset artifact folder, a local jsonl/json/csv/parquet file or a Hub dataset id
    (see --columns, --config, --split, --revision), or a recipe file: then its decontam section
    gives the defaults, runs/<name>/dataset is checked and runs/<name>/dataset-clean written.
    Each benchmark item is matched in several views (question, question with choices, passage
    windows, context with ending); candidates over a per-benchmark cosine are hits when the
    cosine is high or the row states the item's numbers; with --platypus, one cut on the
    question alone. Hits are categorised as duplicate, gray_area or
    similar_different. With --out, flagged rows are removed (unless --keep) and the folder gets
    data.parquet, manifest.json, leak_report.json/.md and leak_certificate.json. Without
    --out, a dataset with hits exits with status 1.
    """
    from .decontam import check_dataset, check_recipe

    files = _benchmark_files(benchmark_files)
    options = {
        "benchmarks": [b.strip() for b in benchmarks.split(",") if b.strip()] if benchmarks else None,
        "method": "platypus" if platypus else None,
        "threshold": threshold,
        "keep": list(keep) or None,
        "model": model,
        "benchmark_files": files or None,
        "force": force or None,
    }
    if dataset.endswith((".yaml", ".yml")):
        from .recipe import load_recipe

        result = check_recipe(load_recipe(dataset, list(overrides)), out_dir=out, **options)
    elif overrides:
        raise HubkitError("--set applies to a recipe; DATASET is a folder")
    else:
        from .decontam import SourceOptions
        from .decontam.source import parse_columns

        source = SourceOptions(parse_columns(columns), config, split, revision)
        result = check_dataset(
            dataset, out, source=source, **{k: v for k, v in options.items() if v is not None}
        )
        read = result.report.get("source", {})
        if read.get("guessed_columns"):
            guessed = read["guessed_columns"]
            shown = ", ".join(f"{k}={v}" + " (guessed)" * (k in guessed) for k, v in read["columns"].items())
            click.echo(f"Columns: {shown}; --columns FIELD=COLUMN,... to change")
    for name, counts in result.summary.items():
        click.echo(f"  {name}: " + ", ".join(f"{n} {category}" for category, n in counts.items()))
    flagged = result.removed + result.kept_flagged
    click.echo(f"{result.rows_checked} rows checked: {len(result.hits)} hits on {flagged} rows.")
    if result.out is None:
        if result.hits:
            raise HubkitError(
                f"{dataset}: {flagged} rows match benchmark questions; pass --out DIR to remove them"
            )
        return
    click.echo(f"Wrote {result.out}: {result.removed} rows removed, {result.kept_flagged} flagged rows kept.")
    if not result.passed:
        click.echo("Warning: kept rows copy or reword benchmark questions; the certificate does not pass.")


@cli.command(
    "eval",
    help=f"""Score MODEL (a folder or Hub id) on the Open LLM Leaderboard (v1) tasks with
    lm-evaluation-harness.

    {", ".join(b.summary() for b in BENCHMARKS.values())}, and their
    average, on the benchmark files or Hub datasets the leak check read. Few-shot examples come
    from the same file or split with the scored item left out (the local copies have no train/dev
    split); the results say so. The model loads once for all tasks. Writes results.json (lm-eval's) and
    manifest.json (weights and adapter hashes, task versions, shots, limit, benchmark hashes as
    in the leak certificate); `hubkit card ... --eval-results DIR` puts the scores on a card.
    """,
)
@click.argument("model")
@click.option("--adapter", default=None, help="LoRA adapter (folder or Hub id) scored on MODEL, not merged.")
@click.option(
    "--tasks",
    default=None,
    help=f"Comma-separated: {','.join(BENCHMARKS)} [default: all; "
    + ", ".join(k for k, b in BENCHMARKS.items() if b.loader is None)
    + " only with its file].",
)
@click.option(
    "--benchmark-file",
    "benchmark_files",
    multiple=True,
    metavar="NAME=PATH",
    help="A task's local benchmark file (MMLU: the folder of <subject>_test.csv) or hub:ID[@REVISION] "
    "(the leak check's Hub split; no revision: the commit served now, recorded); over the recipe's. "
    "A task without one is read from the leaderboard's Hub dataset, as data check does.",
)
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take the benchmark files from this recipe's decontam.benchmark_files (what `data check` read).",
)
@_recipe_option("EvalSection", "limit", "--limit", type=int, or_recipe=False)
@_recipe_option("EvalSection", "batch_size", "--batch-size", or_recipe=False)
@_recipe_option("EvalSection", "device", "--device", or_recipe=False)
@click.option("--out", default=None, help="Eval artifact folder [default: runs/eval/<model>[+<adapter>]].")
@click.option("--force", is_flag=True, help="Score again even if the artifact is up to date.")
def eval_command(
    model: str,
    adapter: str | None,
    tasks: str | None,
    benchmark_files: tuple[str, ...],
    recipe: str | None,
    limit: int | None,
    batch_size: str,
    device: str | None,
    out: str | None,
    force: bool,
) -> None:
    """Score MODEL on the leaderboard tasks (the help text is built from the benchmarks table)."""
    import logging

    from .evaluate import evaluate_model

    # lm-eval warns once per task (57 for MMLU) that custom loaders take --metadata: hubkit passes it.
    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    files: dict[str, str] = {}
    if recipe is not None:
        from .decontam.check import _recipe_ref
        from .recipe import load_recipe

        loaded = load_recipe(recipe)
        files = {k: _recipe_ref(loaded, v) for k, v in loaded.decontam.benchmark_files.items()}
    files |= _benchmark_files(benchmark_files)
    size: str | int = batch_size
    if batch_size != "auto":
        if not batch_size.isdigit() or int(batch_size) < 1:
            raise HubkitError(f"--batch-size {batch_size!r}: expected auto or a positive integer")
        size = int(batch_size)
    result = evaluate_model(
        model,
        adapter=adapter,
        tasks=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
        benchmark_files=files,
        limit=limit,
        batch_size=size,
        device=device,
        out=out,
        force=force,
        echo=click.echo,
    )
    click.echo(result.table())
    click.echo(("Up to date: " if result.reused else "Wrote ") + str(result.folder))


@cli.command("train-and-push")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value.")
@click.option("--endpoint", default=None, envvar="HF_ENDPOINT", help="Hub URL (default: $HF_ENDPOINT).")
@click.option(
    "--local-hub",
    type=click.Path(file_okay=False),
    default=None,
    help="Start a local Hub storing repos in this folder, push there, then load the repos back.",
)
@click.option("--dry-run", is_flag=True, help="Do everything except pushing; list what would be pushed.")
@click.option(
    "--force", multiple=True, type=_StageName(), help="Redo a stage even if its artifact is up to date."
)
@click.option("--allow-unverified", multiple=True, metavar="ID", help="Merge this model without provenance.")
def train_and_push_command(
    recipe_path: str,
    overrides: tuple[str, ...],
    endpoint: str | None,
    local_hub: str | None,
    dry_run: bool,
    force: tuple[str, ...],
    allow_unverified: tuple[str, ...],
) -> None:
    """Run RECIPE end to end and publish the dataset, the adapter and the merged model.

    Stages: data build, data check, train, merge (taint gate), verify, eval (with the recipe's
    eval: section), cards, push. Each writes an artifact under runs/<name>/ and is skipped
    when that artifact is up to date, so a re-run after a crash resumes. A failing leak check,
    taint gate, equivalence check or eval gate stops everything before the first byte is
    pushed; each repo gets one commit, tagged with the recipe's version. Offline: --local-hub DIR.
    """
    from .pipeline import load_back, train_and_push
    from .recipe import load_recipe

    if endpoint and local_hub:
        raise click.UsageError("give --endpoint or --local-hub, not both")
    recipe = load_recipe(recipe_path, list(overrides))
    out = console()
    options = {"dry_run": dry_run, "force": force, "allow_unverified": allow_unverified, "echo": out.line}
    if local_hub is None:
        result = train_and_push(recipe, endpoint=endpoint, **options)
        out.result(result.summary())
        if not dry_run:
            out.result(result.next_steps())
        return
    from .endpoint import use_endpoint
    from .hub import LocalHub

    with LocalHub(local_hub) as hub:
        use_endpoint(hub.endpoint)
        out.line(f"Local Hub at {hub.endpoint} (repos in {local_hub})")
        result = train_and_push(recipe, endpoint=hub.endpoint, **options)
        if not dry_run:
            out.begin("load-back")
            check = load_back(result)
            out.end(
                f"Loaded back with datasets/transformers/peft: {check['dataset_rows']} rows; "
                "merged model and adapter logits equal the local ones."
            )
            out.line(f"Generation from {result.pushes['merged'].repo_id}: {check['generation']!r}")
        out.result(result.summary())
        if not dry_run:
            out.result(result.next_steps(serve=local_hub))


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
