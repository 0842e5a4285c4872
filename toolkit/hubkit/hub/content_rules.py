"""What the Hub decides from file contents: LFS or regular upload, and README metadata checks."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub sends files of 10 MB and more through LFS

_LFS = "filter=lfs diff=lfs merge=lfs -text"
_MODEL_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* "
    "*.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
_DATASET_EXTRA = {
    "Audio files - uncompressed": "*.pcm *.sam *.raw",
    "Audio files - compressed": "*.aac *.flac *.mp3 *.ogg *.wav",
    "Image files - uncompressed": "*.bmp *.gif *.png *.tiff",
    "Image files - compressed": "*.jpg *.jpeg *.webp",
    "Video files - compressed": "*.mp4 *.webm",
}


def default_gitattributes(repo_type: str) -> bytes:
    """The .gitattributes of a new repo, like the Hub's: common binary formats go through LFS."""
    lines = [f"{p} {_LFS}" for p in _MODEL_PATTERNS]
    if repo_type == "dataset":
        lines += [f"*.lz4 {_LFS}", f"*.mds {_LFS}"]
        for comment, patterns in _DATASET_EXTRA.items():
            lines.append(f"# {comment}")
            lines += [f"{p} {_LFS}" for p in patterns.split()]
    return ("\n".join(lines) + "\n").encode()


def lfs_patterns(gitattributes: str) -> list[str]:
    """The patterns that a .gitattributes file routes through LFS (``filter=lfs``)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def _matches(path: str, pattern: str) -> bool:
    if "/" not in pattern.strip("/"):  # like git: a bare pattern matches the file name at any depth
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern.strip("/"))
    return fnmatchcase(path, pattern.lstrip("/"))


def ignored(path: str, gitignore: str) -> bool:
    """Whether a .gitignore (plain patterns; no negation) excludes ``path`` from commits."""
    parts = path.split("/")
    for line in gitignore.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith(("#", "!")):
            continue
        pattern = pattern.rstrip("/")
        if "/" in pattern:
            pattern = pattern.lstrip("/")
            if fnmatchcase(path, pattern) or any(
                fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts))
            ):
                return True
        elif any(fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def _is_binary(sample: bytes) -> bool:
    if b"\0" in sample:
        return True
    for cut in range(4):  # the 512-byte sample may end inside a multi-byte character
        try:
            sample[: len(sample) - cut].decode("utf-8")
            return False
        except UnicodeDecodeError:
            continue
    return True


def upload_mode(path: str, size: int, sample: bytes, patterns: list[str]) -> str:
    """``"lfs"`` or ``"regular"``, decided like the Hub: size, .gitattributes, binary content."""
    if size == 0:
        return "regular"
    if size >= LFS_SIZE_THRESHOLD or any(_matches(path, p) for p in patterns) or _is_binary(sample):
        return "lfs"
    return "regular"


MAX_METADATA_BYTES = 256 * 1024  # the YAML block of a card; larger ones are refused, not parsed
MAX_METADATA_VALUES = 100_000  # keys and values once YAML aliases are expanded (as JSON would)
_MAX_DEPTH = 100


def _expanded_size(data: Any) -> int:
    """How many keys and values ``data`` holds once shared (aliased) parts are counted each time.

    Computed per distinct object, so a 447-byte "billion laughs" card costs microseconds, not
    the gigabytes its JSON would take; a self-referencing alias raises ValueError.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(obj: Any, depth: int) -> int:
        if not isinstance(obj, (dict, list)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active or depth > _MAX_DEPTH:
            raise ValueError("The metadata refers to itself or is nested too deeply.")
        active.add(key)
        items = [x for kv in obj.items() for x in kv] if isinstance(obj, dict) else obj
        sizes[key] = 1 + sum(size(x, depth + 1) for x in items)
        active.discard(key)
        return sizes[key]

    return size(data, 0)


def front_matter(content: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse the YAML block between ``---`` lines at the top of a README: (metadata, errors).

    The work is bounded: a block over MAX_METADATA_BYTES is not parsed, and metadata whose
    aliases expand past MAX_METADATA_VALUES is refused.
    """
    import yaml

    text = content.lstrip("\ufeff").lstrip()  # the Hub finds the block after leading blank lines too
    if not text.startswith("---"):
        return None, []
    lines = text.splitlines()
    if lines[0].strip() != "---":
        return None, []
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        return None, ["The YAML metadata block starting with '---' is not closed by a '---' line."]
    block = "\n".join(lines[1:end])
    if len(block.encode()) > MAX_METADATA_BYTES:
        return None, [f"The YAML metadata block is larger than {MAX_METADATA_BYTES // 1024} KiB."]
    try:
        data = yaml.load(block, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        return None, [f"Invalid YAML in the metadata block: {exc}".replace("\n", " ")]
    except RecursionError:
        return None, ["The metadata is nested too deeply."]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return None, [f"The metadata must be a YAML mapping (key: value), not a {type(data).__name__}."]
    try:
        values = _expanded_size(data)
    except ValueError as exc:
        return None, [str(exc)]
    if values > MAX_METADATA_VALUES:
        return None, [
            f"The metadata holds {values} values once its YAML aliases are expanded "
            f"(at most {MAX_METADATA_VALUES})."
        ]
    return data, []


# The license identifiers the Hub accepts in the "license" field (https://hf.co/docs/hub/repositories-licenses).
HUB_LICENSES = frozenset(
    """
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa
    unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3
    llama3.1 llama3.2 llama3.3 llama4 gemma unknown other
    """.split()
)

_STR_OR_LIST = ("tags", "datasets", "language", "metrics", "base_model", "license_link", "task_categories")
_STR = ("license", "library_name", "pipeline_tag", "pretty_name", "license_name", "thumbnail")


def validate_metadata(meta: dict[str, Any], repo_type: str) -> list[str]:
    """Type checks on the README metadata fields the Hub and the clients rely on."""
    errors = []
    for key in _STR_OR_LIST:
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    for key in _STR:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    license_id = meta.get("license")
    if isinstance(license_id, str) and license_id not in HUB_LICENSES:
        errors.append(
            f'"license" must be one of the Hub\'s license ids, not "{license_id}" '
            "(see https://hf.co/docs/hub/repositories-licenses; use 'other' with license_name)"
        )
    model_index = meta.get("model-index")
    if model_index is not None and not (
        isinstance(model_index, list)
        and all(isinstance(m, dict) and isinstance(m.get("results", []), list) for m in model_index)
    ):
        errors.append('"model-index" must be a list of {name, results: [...]} mappings')
    if repo_type == "dataset":
        configs = meta.get("configs")
        if configs is not None and not (
            isinstance(configs, list)
            and all(isinstance(c, dict) and isinstance(c.get("config_name"), str) for c in configs)
        ):
            errors.append('"configs" must be a list of mappings, each with a "config_name" string')
        info = meta.get("dataset_info")
        if info is not None and not isinstance(info, (dict, list)):
            errors.append('"dataset_info" must be a mapping or a list of mappings')
    return errors
