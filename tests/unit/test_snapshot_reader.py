"""The fast snapshot reader against the reference one (`csv`, row by row): same ids in the same
order, same inner ids, bit-identical numbers, the same errors, whatever the block size."""

from __future__ import annotations

import csv
import gzip
import io
import math
from typing import Any

import numpy as np
import pytest

from recommender import snapshot
from recommender.dataset import Ratings
from recommender.errors import DatasetError
from recommender.snapshot import iter_snapshot_rows, ratings_from_rows, read_snapshot

PLAIN_IDS = [
    "1",
    "42",
    "u-7",
    "item-00001",
    "",
    "x" * 7,
    "y" * 8,
    "z" * 9,
    "w" * 16,
    "v" * 17,
    "😀",
    "日本語",
]
EDGE_IDS = ["a" * 63, "b" * 64, "c" * 65, "d" * 300, "NULL", "\\N", " spaced ", "tab\there", "0", "00"]
QUOTED_IDS = ["a,b", 'say "hi"', "line1\nline2", "cr\r\nlf", "lone\rcr", '"', ",", "\n"]
RATINGS = [
    "4",
    "3.5",
    "3.50",
    "10",
    "-1.5",
    "0",
    "-0",
    "0.0",
    "-0.0",
    ".5",
    "5.",
    "007",
    "1e+2",
    "2E-1",
    "0.1",
    "0.3",
    "123456789012345",
    "1234567890123456",
    "12345678901234.5",
    "1.23456789012345",
    "0.000000000000001",
    "99999999999999.9",
    " 4",
    "+3",
    "1_0",
]
STAMPS = ["1700000000", "1700000000.5", "", "0", "-86400", "1.7e9", "946684800.123456", "1"]


def _field(value: str) -> str:
    if value == "" or any(c in value for c in ',"\r\n'):  # PostgreSQL quotes "" (NULL is bare)
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv(rows: list[list[str]], header: list[str], quote_all: bool = False) -> bytes:
    """CSV as PostgreSQL's COPY writes it: fields quoted only where needed, "\n" line ends."""
    if quote_all:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        writer.writerows(rows)
        return text.getvalue().encode("utf-8")
    return "".join(",".join(map(_field, row)) + "\n" for row in [header, *rows]).encode("utf-8")


def _reference(data: bytes) -> Ratings:
    return ratings_from_rows(iter_snapshot_rows(io.BytesIO(gzip.compress(data))))


def _fast(data: bytes, chunk_bytes: int = snapshot.READ_CHUNK_BYTES) -> Ratings:
    return read_snapshot(io.BytesIO(gzip.compress(data)), chunk_bytes=chunk_bytes)


def assert_same(a: Ratings, b: Ratings) -> None:
    assert a.user_ids == b.user_ids
    assert a.item_ids == b.item_ids
    for name in ("users", "items"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.int32 and np.array_equal(x, y), name
    # bit for bit: -0.0 is not 0.0, and NaN equals NaN
    assert a.ratings.dtype == b.ratings.dtype == np.float64
    assert np.array_equal(a.ratings.view(np.int64), b.ratings.view(np.int64))
    assert (a.timestamps is None) == (b.timestamps is None)
    if a.timestamps is not None and b.timestamps is not None:
        assert np.array_equal(a.timestamps.view(np.int64), b.timestamps.view(np.int64))


def _rows(rng: np.random.Generator, n: int, ids: list[str], timed: bool, sort: bool) -> list[list[str]]:
    users = [ids[k] for k in rng.integers(len(ids), size=n)]
    items = [ids[k] for k in rng.integers(len(ids), size=n)]
    if sort:
        users.sort()
    rows = [[u, i, RATINGS[int(rng.integers(len(RATINGS)))]] for u, i in zip(users, items)]
    if timed:
        for row in rows:
            row.append(STAMPS[int(rng.integers(len(STAMPS)))])
    return rows


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1000, 1 << 20])
@pytest.mark.parametrize(
    ("ids", "timed", "sort"),
    [
        (PLAIN_IDS, True, True),
        (PLAIN_IDS, False, False),
        (PLAIN_IDS + EDGE_IDS, True, False),
        (PLAIN_IDS + EDGE_IDS + QUOTED_IDS, True, True),
        (PLAIN_IDS + QUOTED_IDS, False, False),
    ],
    ids=["plain-sorted", "plain-untimed", "edge", "quoted-sorted", "quoted-untimed"],
)
def test_same_as_the_reference_reader(ids: list[str], timed: bool, sort: bool, chunk_bytes: int) -> None:
    rng = np.random.default_rng(len(ids) + chunk_bytes)
    header = ["user", "item", "rating", "timestamp"] if timed else ["user", "item", "rating"]
    data = _csv(_rows(rng, 400, ids, timed, sort), header)
    assert_same(_fast(data, chunk_bytes), _reference(data))


def test_everything_quoted_and_crlf_line_ends() -> None:
    rng = np.random.default_rng(5)
    rows = _rows(rng, 300, PLAIN_IDS + QUOTED_IDS, timed=True, sort=False)
    header = ["user", "item", "rating", "timestamp"]
    for data in (
        _csv(rows, header, quote_all=True),
        _csv(rows, header).replace(b"\n", b"\r\n"),  # also inside quoted fields: csv keeps them
    ):
        for chunk_bytes in (13, 1 << 20):
            assert_same(_fast(data, chunk_bytes), _reference(data))


def test_many_ids_in_many_blocks() -> None:
    """More ids than the lookup table first holds (it grows), across many blocks, users sorted."""
    rng = np.random.default_rng(1)
    n = 60_000
    users = np.sort(rng.integers(0, 8_000, n))
    items = rng.zipf(1.3, n) % 20_000
    lines = [
        f"{u},item-{i:05d},{r},{t}" for u, i, r, t in zip(users, items, rng.integers(1, 6, n), users * 7)
    ]
    data = ("user,item,rating,timestamp\n" + "\n".join(lines) + "\n").encode()
    fast = _fast(data, 64 * 1024)
    assert_same(fast, _reference(data))
    assert len(fast.user_ids) == len(set(users.tolist()))


def test_hash_collisions_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id hashing alike: the byte-for-byte check sends them all the exact way."""
    monkeypatch.setattr(snapshot, "_hash_rows", lambda words, widths: np.zeros(widths.size, dtype=np.uint64))
    rng = np.random.default_rng(2)
    data = _csv(_rows(rng, 500, PLAIN_IDS + EDGE_IDS, timed=False, sort=False), ["user", "item", "rating"])
    assert_same(_fast(data, 500), _reference(data))


def test_numbers_exactly_as_float() -> None:
    """The digit arithmetic gives float(text) to the bit, or leaves the field to float()."""
    rng = np.random.default_rng(3)
    texts = []
    for _ in range(20_000):
        digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 18))))
        dot = int(rng.integers(0, len(digits) + 2))
        text = digits[:dot] + "." + digits[dot:] if dot <= len(digits) else digits
        texts.append(("-" if rng.random() < 0.3 else "") + text)
    texts += ["-", ".", "-.", "", "1.2.3", "--1", "1-", "4x", "0x10", "١٢"]
    data = "\n".join(texts).encode() + b"\n"
    block = snapshot._Block(data)
    ends = np.flatnonzero(block.buf == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    numbers, others = snapshot._numbers(block, starts, ends)
    left = set(others.tolist())
    parsed_here = 0
    for k, text in enumerate(texts):
        if k in left:
            continue
        parsed_here += 1
        expected = float(text)
        assert numbers[k] == expected and math.copysign(1, numbers[k]) == math.copysign(1, expected), text
    assert parsed_here > 15_000
    for k, text in enumerate(texts):
        if (
            len(text.lstrip("-").replace(".", "", 1)) > 15
            or not text.lstrip("-").replace(".", "", 1).isdigit()
        ):
            assert k in left, text


def test_header_split_across_blocks_and_header_only() -> None:
    data = _csv([["u", "i", "4"]], ["user", "item", "rating"])
    for chunk_bytes in (1, 2, 5, 100):
        assert_same(_fast(data, chunk_bytes), _reference(data))
    empty = _fast(b"user,item,rating,timestamp\n", 3)
    assert empty.n_ratings == 0 and empty.timestamps is not None
    assert _fast(b"user,item,rating").n_ratings == 0


def test_last_row_without_newline() -> None:
    data = b"user,item,rating\nu1,i1,4\nu2,i2,3.5"
    for chunk_bytes in (1, 4, 1000):
        assert_same(_fast(data, chunk_bytes), _reference(data))


def test_concatenated_gzip_members() -> None:
    first = gzip.compress(b"user,item,rating\nu1,i1,4\n")
    second = gzip.compress(b"u2,i1,3\nu1,i2,5\n")
    ratings = read_snapshot(io.BytesIO(first + second), chunk_bytes=4)
    assert ratings.user_ids == ["u1", "u2"] and ratings.ratings.tolist() == [4.0, 3.0, 5.0]


def _error(data: bytes, chunk_bytes: int) -> str:
    with pytest.raises(DatasetError) as caught:
        _fast(data, chunk_bytes)
    return str(caught.value)


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
@pytest.mark.parametrize("bad", ["four", "", "nan", "-inf", "Infinity", "1e999", "4,5", 'x"y'])
def test_bad_rating_far_down_names_its_row(bad: str, chunk_bytes: int) -> None:
    rows = [[f"u{k}", f"i{k % 7}", "3"] for k in range(500)]
    rows[321][2] = bad
    message = _error(_csv(rows, ["user", "item", "rating"]), chunk_bytes)
    assert "row 323:" in message and repr(bad) in message  # the header is row 1


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_bad_timestamp_names_its_row(chunk_bytes: int) -> None:
    rows = [[f"u{k}", "i", "3", "1700000000"] for k in range(50)]
    rows[40][3] = "yesterday"
    message = _error(_csv(rows, ["user", "item", "rating", "timestamp"]), chunk_bytes)
    assert "row 42:" in message and "timestamp 'yesterday' is not a number" in message


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
@pytest.mark.parametrize("line", [b"u9,i9", b"u9,i9,4,5", b"", b'"u,9",i9'])
def test_wrong_number_of_fields_names_its_row(line: bytes, chunk_bytes: int) -> None:
    body = b"".join(b"u%d,i%d,4\n" % (k, k) for k in range(100))
    data = b"user,item,rating\n" + body + line + b"\n" + b"u1,i1,2\n"
    assert "row 102: " in _error(data, chunk_bytes)


@pytest.mark.parametrize("chunk_bytes", [16, 1 << 20])
def test_not_utf8_far_down(chunk_bytes: int) -> None:
    body = b"".join(b"u%d,i,4\n" % k for k in range(300))
    message = _error(b"user,item,rating\n" + body + b"caf\xe9,i,4\n", chunk_bytes)
    assert "not valid UTF-8" in message and "SQL_ASCII" in message


def test_unterminated_quote_at_the_end() -> None:
    data = b'user,item,rating\nu1,i1,4\n"u2,i2,3\n'
    reference: Any
    try:
        reference = _reference(data)
    except Exception as error:  # whatever csv makes of it, the fast reader must not crash oddly
        reference = error
    try:
        fast: Any = _fast(data, 5)
    except DatasetError as error:
        fast = error
    if isinstance(reference, Ratings):
        assert isinstance(fast, Ratings)
        assert_same(fast, reference)


def test_truncated_snapshot_raises_like_gzip() -> None:
    data = gzip.compress(b"user,item,rating\n" + b"u,i,4\n" * 1000)
    with pytest.raises(EOFError):
        read_snapshot(io.BytesIO(data[:-20]))
    with pytest.raises(EOFError):
        list(iter_snapshot_rows(io.BytesIO(data[:-20])))
