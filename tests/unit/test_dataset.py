"""The dataset snapshot (PostgreSQL's COPY CSV, gzip) back into arrays, and the streaming S3 writer."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from recommender import storage
from recommender.errors import DatasetError
from recommender.snapshot import ratings_from_rows, read_snapshot
from recommender.storage import MULTIPART_PART_SIZE, S3Writer
from tests.doubles import as_s3

TRICKY_USERS = [
    "a,b",
    'say "hi"',
    "line1\nline2",
    "cr\r\nlf",
    "ünïcödé",
    "😀",
    " leading and trailing ",
    "NULL",
    "",
    "sep\u2028arator",
    "semi;colon\ttab",
    "\\N",
]
TRICKY_ITEMS = ["x,y,z", '"""', "multi\n\nline", "日本語", "42", "4.5", "'quoted'"]


def _csv(rows: list[list[Any]], header: list[str] | None = None) -> bytes:
    """CSV as PostgreSQL's `COPY ... TO STDOUT WITH (FORMAT csv, HEADER true)` writes it."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header or ["user", "item", "rating"])
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _snapshot(rows: list[list[Any]], header: list[str] | None = None) -> io.BytesIO:
    return io.BytesIO(gzip.compress(_csv(rows, header)))


def _tricky_rows() -> list[list[str]]:
    rng = np.random.default_rng(3)
    rows = []
    for k in range(60):
        # every id once first, in list order, then at random
        user = TRICKY_USERS[k] if k < len(TRICKY_USERS) else str(rng.choice(TRICKY_USERS))
        item = TRICKY_ITEMS[k % len(TRICKY_ITEMS)] if k < 20 else str(rng.choice(TRICKY_ITEMS))
        rows.append([user, item, str(int(rng.integers(1, 11)) / 2)])
    return rows


def _first_appearance(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def test_snapshot_ids_round_trip_exactly() -> None:
    rows = _tricky_rows()
    ratings = read_snapshot(_snapshot(rows))
    assert ratings.n_ratings == len(rows)
    assert ratings.user_ids == _first_appearance([r[0] for r in rows])
    assert ratings.item_ids == _first_appearance([r[1] for r in rows])
    assert set(ratings.user_ids) == set(TRICKY_USERS)
    assert set(ratings.item_ids) == set(TRICKY_ITEMS)
    # inner ids follow first appearance, row by row
    assert [ratings.user_ids[u] for u in ratings.users.tolist()] == [r[0] for r in rows]
    assert [ratings.item_ids[i] for i in ratings.items.tolist()] == [r[1] for r in rows]
    assert ratings.users[0] == 0 and ratings.items[0] == 0
    assert ratings.users.dtype == np.int32 and ratings.items.dtype == np.int32
    assert ratings.ratings.tolist() == [float(r[2]) for r in rows]
    assert ratings.timestamps is None


def test_snapshot_written_by_postgres_quoting_everything() -> None:
    """The reader must not depend on how much the writer quotes."""
    rows = _tricky_rows()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["user", "item", "rating"])
    writer.writerows(rows)
    ratings = read_snapshot(io.BytesIO(gzip.compress(text.getvalue().encode())))
    assert [ratings.user_ids[u] for u in ratings.users.tolist()] == [r[0] for r in rows]


def test_snapshot_with_timestamps() -> None:
    rows = [
        ["u1", "i1", "4", "1700000000"],
        ["u2", "i1", "3.5", ""],  # a NULL timestamp
        ["u1", "i2", "2.25", "1700000000.5"],
    ]
    ratings = read_snapshot(_snapshot(rows, ["user", "item", "rating", "timestamp"]))
    assert ratings.timestamps is not None
    assert ratings.timestamps[0] == 1700000000.0
    assert math.isnan(ratings.timestamps[1])
    assert ratings.timestamps[2] == 1700000000.5
    assert ratings.ratings.tolist() == [4.0, 3.5, 2.25]
    assert ratings.user_ids == ["u1", "u2"] and ratings.users.tolist() == [0, 1, 0]


def test_numeric_formats_postgres_writes() -> None:
    rows = [["u", "a", "3.50"], ["u", "b", "10"], ["u", "c", "-1.5"], ["u", "d", "1e+2"], ["u", "e", "0"]]
    assert read_snapshot(_snapshot(rows)).ratings.tolist() == [3.5, 10.0, -1.5, 100.0, 0.0]


def test_empty_snapshot() -> None:
    ratings = read_snapshot(_snapshot([]))
    assert ratings.n_ratings == 0
    assert ratings.user_ids == [] and ratings.item_ids == []


@pytest.mark.parametrize("bad", ["four", "", "4,5", "N/A", "4 stars"])
def test_non_numeric_rating_names_the_row(bad: str) -> None:
    rows = [["u1", "i1", "4"], ["u2", "i2", "3"], ["u3", "i3", bad], ["u4", "i4", "1"]]
    with pytest.raises(DatasetError) as caught:
        read_snapshot(_snapshot(rows))
    message = str(caught.value)
    assert "row 4" in message  # the header is row 1
    assert repr(bad) in message


def test_row_number_counts_records_not_lines() -> None:
    rows = [["multi\nline\nuser", "i1", "4"], ["u2", "i2", "oops"]]
    with pytest.raises(DatasetError, match="row 3"):
        read_snapshot(_snapshot(rows))


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_non_finite_rating_raises(bad: str) -> None:
    with pytest.raises(DatasetError, match="row 3"):
        read_snapshot(_snapshot([["u1", "i1", "4"], ["u2", "i2", bad]]))


@pytest.mark.parametrize(
    "header",
    [
        ["user_id", "item_id", "rating"],
        ["item", "user", "rating"],
        ["user", "item"],
        ["USER", "ITEM", "RATING"],
    ],
)
def test_wrong_header_raises(header: list[str]) -> None:
    with pytest.raises(DatasetError, match="header"):
        read_snapshot(_snapshot([["u", "i", "4"]], header))


def test_no_header_at_all() -> None:
    with pytest.raises(DatasetError, match="header"):
        read_snapshot(io.BytesIO(gzip.compress(b"")))


def test_ratings_from_rows_of_any_id_type() -> None:
    ratings = ratings_from_rows([(1, 10, 4), ("1", "10", 5.0), (2, 10, "3")])
    assert ratings.user_ids == ["1", "2"] and ratings.item_ids == ["10"]
    assert ratings.users.tolist() == [0, 0, 1]
    assert ratings.ratings.tolist() == [4.0, 5.0, 3.0]


# --- S3Writer against moto ------------------------------------------------------------------------

BUCKET = "test-bucket"


class Spy:
    """The S3 client, recording which operations were called."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield Spy(client)


def _object(s3: Spy, key: str) -> dict[str, Any]:
    response: dict[str, Any] = s3._client.get_object(Bucket=BUCKET, Key=key)
    return response


def _keys(s3: Spy) -> list[str]:
    return [o["Key"] for o in s3._client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def _pending_uploads(s3: Spy) -> list[Any]:
    uploads: list[Any] = s3._client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return uploads


def test_small_object_is_one_put(s3: Spy) -> None:
    data = b"hello, \xe2\x9c\x93 world\n" * 100
    with S3Writer(as_s3(s3), BUCKET, "small.bin", "text/plain") as writer:
        writer.write(data[:7])
        writer.write(memoryview(data[7:]))
    assert s3.calls == ["put_object"]
    stored = _object(s3, "small.bin")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "text/plain"
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    assert writer.bytes_written == len(data)
    assert writer.closed


def test_empty_object(s3: Spy) -> None:
    with S3Writer(as_s3(s3), BUCKET, "empty", "application/octet-stream") as writer:
        pass
    assert _object(s3, "empty")["Body"].read() == b""
    assert writer.sha256 == hashlib.sha256(b"").hexdigest()


def test_large_stream_is_multipart(s3: Spy) -> None:
    data = np.random.default_rng(0).bytes(MULTIPART_PART_SIZE + 3 * 1024 * 1024 + 17)
    chunk = 1_000_003
    with S3Writer(as_s3(s3), BUCKET, "big/object.bin", "application/gzip") as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
        assert _keys(s3) == []  # nothing is visible before the upload is completed
    assert "put_object" not in s3.calls
    assert s3.calls.count("create_multipart_upload") == 1
    assert s3.calls.count("upload_part") == 2
    assert s3.calls[-1] == "complete_multipart_upload"
    stored = _object(s3, "big/object.bin")
    assert stored["ETag"].strip('"').endswith("-2")
    assert stored["ContentType"] == "application/gzip"
    assert stored["Body"].read() == data
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    assert writer.bytes_written == len(data)
    assert _pending_uploads(s3) == []


def test_gzip_snapshot_through_the_writer(s3: Spy) -> None:
    """What Extract does: CSV into gzip into the writer; what Train does: read it back."""
    rows = _tricky_rows()
    with (
        S3Writer(as_s3(s3), BUCKET, "dataset/ratings.csv.gz", "application/gzip") as writer,
        gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as compressed,
    ):
        compressed.write(_csv(rows))
    body = _object(s3, "dataset/ratings.csv.gz")["Body"]
    ratings = read_snapshot(body)
    assert [ratings.user_ids[u] for u in ratings.users.tolist()] == [r[0] for r in rows]
    assert writer.sha256 == hashlib.sha256(_object(s3, "dataset/ratings.csv.gz")["Body"].read()).hexdigest()


def test_exception_in_small_write_leaves_nothing(s3: Spy) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        S3Writer(as_s3(s3), BUCKET, "small-failed", "text/plain") as writer,
    ):
        writer.write(b"partial")
        raise RuntimeError("boom")
    assert _keys(s3) == []
    assert _pending_uploads(s3) == []
    assert "put_object" not in s3.calls
    assert writer.closed


def test_exception_in_multipart_write_leaves_nothing(s3: Spy) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        S3Writer(as_s3(s3), BUCKET, "big-failed", "application/gzip") as writer,
    ):
        writer.write(b"\x00" * (MULTIPART_PART_SIZE + 10))
        assert len(_pending_uploads(s3)) == 1  # a part is already uploaded
        raise RuntimeError("boom")
    assert "abort_multipart_upload" in s3.calls
    assert "complete_multipart_upload" not in s3.calls
    assert _keys(s3) == []
    assert _pending_uploads(s3) == []
    # closing again (as garbage collection would) does not publish anything
    writer.close()
    del writer
    assert _keys(s3) == []


def test_part_size_is_valid_for_s3() -> None:
    assert storage.MULTIPART_PART_SIZE >= 5 * 1024 * 1024
