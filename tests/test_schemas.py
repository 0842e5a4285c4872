"""The artifact files' schemas: each round-trips, reads the files today's hubkit wrote, and turns
a corrupt or hand-edited file into one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubkit import schemas
from hubkit.errors import HubkitError

FIXTURES = Path(__file__).parent / "fixtures" / "cards"
# (artifact folder under tests/fixtures/cards, schema of one of its files)
FIXTURE_FILES = [
    ("dataset", schemas.DatasetManifest),
    ("dataset", schemas.LeakCertificate),
    ("dataset", schemas.LeakReport),
    ("adapter", schemas.AdapterManifest),
    ("adapter", schemas.AdapterProvenance),
    ("adapter", schemas.TrainingMetrics),
    ("merged", schemas.MergedManifest),
    ("merged", schemas.MergedProvenance),
    ("merged", schemas.VerificationRecord),
]
IDS = [f"{folder}-{model.__name__}" for folder, model in FIXTURE_FILES]
# Per schema: a field it requires, and a value of the wrong type for it.
BREAK = {
    schemas.DatasetManifest: ("content_hash", ["not", "a", "hash"]),
    schemas.LeakCertificate: ("passed", "perhaps"),
    schemas.LeakReport: ("removed", "three"),
    schemas.AdapterManifest: ("files", "none"),
    schemas.AdapterProvenance: ("allow_unchecked_data", "maybe"),
    schemas.TrainingMetrics: ("global_step", "many"),
    schemas.MergedManifest: ("hubkit_version", {"major": 0}),
    schemas.MergedProvenance: ("method", 7),
    schemas.VerificationRecord: ("problems", "none"),
}


def _copy(folder: str, model: type[schemas.ArtifactFile], tmp_path: Path) -> tuple[dict, Path]:
    data = json.loads((FIXTURES / folder / model.FILE).read_text())
    return data, tmp_path / model.FILE


def test_every_schema_is_covered() -> None:
    kinds = {model for _, model in FIXTURE_FILES} | {schemas.BaseModelProvenance}
    assert set(schemas.ARTIFACT_FILES) - {schemas.Manifest} <= kinds
    assert set(schemas.MANIFESTS.values()) <= kinds


@pytest.mark.parametrize(("folder", "model"), FIXTURE_FILES, ids=IDS)
def test_fixture_files_written_before_versions_load(folder: str, model: type[schemas.ArtifactFile]) -> None:
    """tests/fixtures was written by hubkit before files carried a schema_version: version 1."""
    assert "schema_version" not in json.loads((FIXTURES / folder / model.FILE).read_text())
    record = model.read(FIXTURES / folder)
    assert record.schema_version == 1


@pytest.mark.parametrize(("folder", "model"), FIXTURE_FILES, ids=IDS)
def test_round_trip(folder: str, model: type[schemas.ArtifactFile], tmp_path: Path) -> None:
    record = model.read(FIXTURES / folder)
    (tmp_path / model.FILE).write_text(json.dumps(record.to_json_dict()))
    again = model.read(tmp_path)
    assert again == record
    original = json.loads((FIXTURES / folder / model.FILE).read_text())
    written = again.to_json_dict()
    if model is schemas.MergedProvenance:  # the one migrated field: versions -> libraries
        original["libraries"] = original.pop("versions")
    assert written == {**original, "schema_version": schemas.SCHEMA_VERSION}


def test_base_model_provenance_round_trip(tmp_path: Path) -> None:
    record = schemas.BaseModelProvenance(
        name="hubkit:tiny-llama",
        weights="random",
        datasets=[],
        tokenizer_corpus_sha256="0" * 64,
        hubkit_version="0.1.0",
    )
    (tmp_path / record.FILE).write_text(json.dumps(record.to_json_dict()))
    assert record.to_json_dict()["kind"] == "base-model"
    assert schemas.BaseModelProvenance.read(tmp_path) == record


@pytest.mark.parametrize(("folder", "model"), FIXTURE_FILES, ids=IDS)
def test_missing_field(folder: str, model: type[schemas.ArtifactFile], tmp_path: Path) -> None:
    data, path = _copy(folder, model, tmp_path)
    field, _ = BREAK[model]
    del data[field]
    path.write_text(json.dumps(data))
    with pytest.raises(HubkitError) as err:
        model.read(tmp_path)
    assert str(err.value) == f"{path}: missing field '{field}'"


@pytest.mark.parametrize(("folder", "model"), FIXTURE_FILES, ids=IDS)
def test_wrong_type(folder: str, model: type[schemas.ArtifactFile], tmp_path: Path) -> None:
    data, path = _copy(folder, model, tmp_path)
    field, value = BREAK[model]
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(HubkitError) as err:
        model.read(tmp_path, needed_by="the test")
    message = str(err.value)
    assert message.startswith(f"{path}: field '{field}' needed by the test: ")
    assert "\n" not in message


@pytest.mark.parametrize(("folder", "model"), FIXTURE_FILES, ids=IDS)
def test_newer_schema_version_is_refused(
    folder: str, model: type[schemas.ArtifactFile], tmp_path: Path
) -> None:
    data, path = _copy(folder, model, tmp_path)
    data |= {"schema_version": schemas.SCHEMA_VERSION + 1, "hubkit_version": "9.0.0"}
    path.write_text(json.dumps(data))
    with pytest.raises(HubkitError) as err:
        model.read(tmp_path)
    assert str(err.value) == (
        f"{path}: schema_version {schemas.SCHEMA_VERSION + 1} (written by hubkit 9.0.0); hubkit "
        f"{schemas.__version__} reads {model.FILE} up to schema_version {schemas.SCHEMA_VERSION}: "
        "upgrade hubkit"
    )


def test_nested_field_is_named_with_its_path(tmp_path: Path) -> None:
    data, path = _copy("merged", schemas.MergedProvenance, tmp_path)
    del data["taint_gate"]["inputs"][1]["leak_certificate"]["dataset_sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        HubkitError, match=r"missing field 'taint_gate\.inputs\[1\]\.leak_certificate\.dataset_sha256'$"
    ):
        schemas.MergedProvenance.read(tmp_path)


def test_not_json_and_not_found(tmp_path: Path) -> None:
    with pytest.raises(
        HubkitError, match=rf"^{tmp_path / 'metrics.json'}: not found, needed by the card \(run it\)$"
    ):
        schemas.TrainingMetrics.read(tmp_path, needed_by="the card", hint=" (run it)")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(HubkitError, match=rf"^{tmp_path / 'metrics.json'}: not readable JSON"):
        schemas.TrainingMetrics.read(tmp_path)
