"""``rows.read_dataset``: the one reader of a dataset artifact's ``data.parquet`` (data check, train)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubkit.errors import HubkitError
from hubkit.rows import read_dataset, write_rows


def test_rows_come_back_as_strings_and_input_may_be_absent(tmp_path):
    write_rows(
        [{"instruction": "q", "input": "i", "output": "a", "data_source": "s"}], tmp_path / "data.parquet"
    )
    assert read_dataset(tmp_path) == [{"instruction": "q", "input": "i", "output": "a", "data_source": "s"}]
    pq.write_table(pa.table({"instruction": ["q"], "output": [7]}), tmp_path / "data.parquet")
    assert read_dataset(tmp_path) == [{"instruction": "q", "output": "7", "input": "", "data_source": ""}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no data.parquet (not a dataset artifact; run `hubkit data build`)"),
        (b"PAR1 not really", "data.parquet: unreadable parquet"),
        (pa.table({"instruction": ["q"], "input": [""]}), "data.parquet: missing column 'output'"),
        (
            pa.table({"instruction": pa.array([], pa.string()), "output": pa.array([], pa.string())}),
            "data.parquet: no rows",
        ),
    ],
)
def test_a_bad_artifact_is_one_line_naming_the_file(tmp_path, content, message):
    if isinstance(content, bytes):
        (tmp_path / "data.parquet").write_bytes(content)
    elif content is not None:
        pq.write_table(content, tmp_path / "data.parquet")
    with pytest.raises(HubkitError, match=re.escape(message)) as err:
        read_dataset(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
