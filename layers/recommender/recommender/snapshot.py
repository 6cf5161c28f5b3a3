"""The dataset snapshot back into arrays: what Train (and a refitting predictor) reads.

`read_snapshot` parses the decompressed CSV a block at a time with numpy, never making a Python
object per row: separators are located with vectorised comparisons, ids are hashed column-wise
and looked up in an open-addressing table (every hit is checked byte for byte against the id it
stands for), and numbers are parsed by digit arithmetic that is exact for the forms PostgreSQL
writes. Whatever the fast path does not recognise goes to a slower path that gives the same
answer: records with quotes or carriage returns go through the `csv` module, ids longer than
`_MAX_FAST_ID_BYTES` through a dict of bytes, numbers in any other spelling through `float()`.
The result is exactly `ratings_from_rows(iter_snapshot_rows(stream))`, the straightforward
reader kept as the reference, in a fraction of its time and memory.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import itertools
import math
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, Protocol

import numpy as np

from .errors import DatasetError
from .ratings import SNAPSHOT_COLUMNS, Ratings

READ_CHUNK_BYTES = 8 * 1024 * 1024  # decompressed bytes parsed at a time
_LF, _CR, _QUOTE, _COMMA, _DOT, _MINUS, _ZERO = (ord(c) for c in '\n\r",.-0')
_MAX_FAST_ID_BYTES = 64  # longer ids are looked up one by one, in a dict of bytes
_MAX_FAST_DIGITS = 15  # at most this many digits: below 2**53, so digit arithmetic is exact
_PAD = 64  # at least _MAX_FAST_ID_BYTES and 16, the widest windows
_ASCII_ZEROS = np.uint64(0x3030303030303030)  # "00000000" as a uint64
_POW10 = np.asarray([float(10**k) for k in range(_MAX_FAST_DIGITS + 2)], dtype=np.float64)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_HASH_SEED = np.uint64(0x2545F4914F6CDD1D)


class ByteStream(Protocol):
    """What the reader needs of a stream: a file, or the body of an S3 GetObject answer."""

    def read(self, size: int, /) -> bytes: ...


def iter_snapshot_rows(stream: IO[bytes]) -> Iterator[list[str]]:
    """Yield the CSV rows of a gzip snapshot (header checked, then skipped), with the `csv` module:
    the reference `read_snapshot` must agree with, row by row."""
    text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream, mode="rb"), encoding="utf-8", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None or tuple(header[:3]) != SNAPSHOT_COLUMNS:
            raise DatasetError(f"not a ratings snapshot: header is {header!r}")
        yield from reader
    except UnicodeDecodeError:
        raise _not_utf8(reader.line_num) from None


def _not_utf8(row: int) -> DatasetError:
    return DatasetError(
        f"the ratings are not valid UTF-8 (near snapshot row {row}): the database"
        " holds ids in another encoding (SQL_ASCII?); convert them, or select them as bytea"
    )


def read_snapshot(stream: ByteStream, *, chunk_bytes: int = READ_CHUNK_BYTES) -> Ratings:
    """Parse a snapshot into Ratings; inner ids are given in order of first appearance.

    Memory: the arrays of the result, plus one block of about `chunk_bytes` of CSV and what is
    parsed of it."""
    parser = _SnapshotParser()
    pending = b""
    for data in _gunzip(stream, chunk_bytes):
        block = pending + data if pending else data
        pending = block[parser.feed(block, final=False) :]
    parser.feed(pending, final=True)
    return parser.result()


def _gunzip(stream: ByteStream, size: int) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (of one member or several), about `size` at a time.
    zlib checks each member's CRC and length; a truncated stream raises EOFError, as gzip does."""
    inflater = zlib.decompressobj(wbits=31)
    started = False  # the current member has begun
    parts: list[bytes] = []
    held = 0
    data = b""
    while True:
        if not data:
            data = stream.read(max(size // 4, 1 << 16))
            if not data:
                break
        out = inflater.decompress(data, size)
        started = True
        data = inflater.unconsumed_tail
        if inflater.eof:  # another member may follow
            data = inflater.unused_data
            inflater = zlib.decompressobj(wbits=31)
            started = False
        if out:
            parts.append(out)
            held += len(out)
            if held >= size:
                yield b"".join(parts)
                parts, held = [], 0
    if started:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    if parts:
        yield b"".join(parts)


def _record_ends(buf: np.ndarray) -> np.ndarray:
    """Offsets of the newlines that end records in a block that starts at a record's start: those
    outside quotes, i.e. after an even number of quote characters."""
    newlines = np.flatnonzero(buf == _LF)
    quotes = np.flatnonzero(buf == _QUOTE)
    if quotes.size == 0:
        return newlines
    inside = np.searchsorted(quotes, newlines) % 2 == 1
    ends: np.ndarray = newlines[~inside]
    return ends


class _Block:
    """Complete records: their bytes, and the same bytes as uint8 with `_PAD` zeros either side,
    so that a fixed-width window at any field (up to `_PAD` wide) stays in bounds."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.padded = np.zeros(len(data) + 2 * _PAD, dtype=np.uint8)
        self.buf = self.padded[_PAD : _PAD + len(data)]
        self.buf[:] = np.frombuffer(data, dtype=np.uint8)

    def fields(self, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
        data = self.data
        return [data[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def windows(self, at: np.ndarray, width: int) -> np.ndarray:
        """A matrix whose row k is the `width` bytes from offset at[k] (a copy)."""
        view = np.lib.stride_tricks.sliding_window_view(self.padded, width)
        rows: np.ndarray = view[at + _PAD]
        return rows

    def matrix(self, starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """The fields as rows of a zero-padded matrix, a multiple of 8 bytes wide."""
        width = max(8, -(-int(widths.max(initial=0)) // 8) * 8)
        rows = self.windows(starts, width)
        _words(rows)[:] &= _byte_masks(width, left=True)[widths]
        return rows


@functools.cache
def _byte_masks(width: int, left: bool) -> np.ndarray:
    """Row k: 0xFF over the first (left) or last k of `width` bytes, 0 elsewhere, as uint64 words."""
    columns = np.arange(width)
    inside = [columns < k if left else columns >= width - k for k in range(width + 1)]
    return _words(np.where(np.asarray(inside), 0xFF, 0).astype(np.uint8))


def _words(matrix: np.ndarray) -> np.ndarray:
    """A matrix of bytes (or booleans), a multiple of 8 wide, seen as uint64 words."""
    words: np.ndarray = np.ascontiguousarray(matrix).view(np.uint64)
    return words


def _any_per_row(words: np.ndarray) -> np.ndarray:
    """Rows of a uint64 matrix with any nonzero word (faster than .any(axis=1) on narrow rows)."""
    result: np.ndarray = words[:, 0] != 0
    for column in range(1, words.shape[1]):
        result |= words[:, column] != 0
    return result


def _count_per_row(flags: np.ndarray) -> np.ndarray:
    """True values per row of a boolean matrix a multiple of 8 wide: the bytes of each word
    (each 0 or 1) summed by one multiplication, into its top byte."""
    words = _words(flags)
    ones = np.uint64(0x0101010101010101)
    total = (words[:, 0] * ones) >> np.uint64(56)
    for column in range(1, words.shape[1]):
        total += (words[:, column] * ones) >> np.uint64(56)
    return total.astype(np.int64)


class _IdIndex:
    """Raw ids (their UTF-8 bytes) -> inner ids, numbered in order of first appearance.

    `codes()` looks up a column of a block without a Python object per row: each id is hashed
    from its bytes (64 bits), its slot in an open-addressing table gives a candidate inner id,
    and the candidate is accepted only if its stored bytes are the id's own. Everything else (a
    new id, two ids sharing a slot) goes through the exact dict `keys`, in row order, so ids are
    numbered exactly as a row-by-row reader numbers them.
    """

    def __init__(self) -> None:
        self.keys: dict[bytes, int] = {}
        self._bits = 12
        self._slot_hash = np.zeros(1 << self._bits, dtype=np.uint64)
        self._slot_code = np.full(1 << self._bits, -1, dtype=np.int64)
        self._code_hash = np.zeros(0, dtype=np.uint64)
        self._code_width = np.zeros(0, dtype=np.int64)  # -1: too long to be in the table
        self._code_bytes = np.zeros((0, 8), dtype=np.uint8)  # zero-padded, a multiple of 8 wide

    def ids(self) -> list[str]:
        return [key.decode("utf-8") for key in self.keys]

    def codes(self, block: _Block, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Inner ids of the fields block.data[starts[k]:ends[k]], registering new ids in order."""
        n = starts.size
        widths = ends - starts
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        if int(widths.max()) > _MAX_FAST_ID_BYTES:
            return self.codes_of_keys(block.fields(starts, ends))
        matrix = block.matrix(starts, widths)
        words = _words(matrix)
        # runs of one id (a snapshot sorted by user): look up the first of each run only
        heads = np.ones(n, dtype=np.bool_)
        heads[1:] = _any_per_row(words[1:] ^ words[:-1]) | (widths[1:] != widths[:-1])
        if np.count_nonzero(heads) * 2 < n:
            rows = np.flatnonzero(heads)
            found = self._lookup(block, starts[rows], ends[rows], words[rows], widths[rows])
            return np.repeat(found, np.diff(np.append(rows, n)))
        return self._lookup(block, starts, ends, words, widths)

    def _lookup(
        self, block: _Block, starts: np.ndarray, ends: np.ndarray, words: np.ndarray, widths: np.ndarray
    ) -> np.ndarray:
        hashes = _hash_rows(words, widths)
        self._widen(words.shape[1] * 8)
        slots = (hashes >> np.uint64(64 - self._bits)).astype(np.intp)
        codes = self._slot_code[slots]
        found = (codes >= 0) & (self._slot_hash[slots] == hashes)
        second = np.flatnonzero(~found)  # an id whose own slot was taken sits in the next one
        slots = slots[second] ^ 1
        codes[second] = self._slot_code[slots]
        found[second] = (codes[second] >= 0) & (self._slot_hash[slots] == hashes[second])
        hit = np.flatnonzero(found)
        candidates = codes[hit]
        stored = _words(self._code_bytes)[candidates, : words.shape[1]]
        wrong = (self._code_width[candidates] != widths[hit]) | _any_per_row(stored ^ words[hit])
        miss = np.ones(starts.size, dtype=np.bool_)
        miss[hit[~wrong]] = False
        if miss.any():
            codes[miss] = self.codes_of_keys(block.fields(starts[miss], ends[miss]))
        return codes.astype(np.int32)

    def codes_of_keys(self, keys: list[bytes]) -> np.ndarray:
        """Inner ids of the given ids (UTF-8 bytes), registering new ones in order."""
        index = self.keys
        new = [key for key in dict.fromkeys(keys) if key not in index]
        if new:
            self._register(new)
        return np.fromiter(map(index.__getitem__, keys), dtype=np.int32, count=len(keys))

    def _register(self, new: list[bytes]) -> None:
        first = len(self.keys)
        self.keys.update(zip(new, range(first, first + len(new))))
        widths = np.fromiter(map(len, new), dtype=np.int64, count=len(new))
        short = widths <= _MAX_FAST_ID_BYTES
        shorts = [key for key, ok in zip(new, short.tolist()) if ok]
        starts = np.zeros(len(shorts), dtype=np.int64)
        np.cumsum(widths[short][:-1], out=starts[1:])
        matrix = _Block(b"".join(shorts)).matrix(starts, widths[short])
        hashes = np.zeros(len(new), dtype=np.uint64)
        hashes[short] = _hash_rows(_words(matrix), widths[short])
        self._widen(matrix.shape[1])
        rows = np.zeros((len(new), self._code_bytes.shape[1]), dtype=np.uint8)
        rows[short, : matrix.shape[1]] = matrix
        self._code_bytes = np.concatenate([self._code_bytes, rows])
        self._code_hash = np.concatenate([self._code_hash, hashes])
        self._code_width = np.concatenate([self._code_width, np.where(short, widths, -1)])
        if len(self.keys) * 4 > self._slot_code.size:  # keep the table at most a quarter full
            while len(self.keys) * 4 > (1 << self._bits):
                self._bits += 1
            self._slot_hash = np.zeros(1 << self._bits, dtype=np.uint64)
            self._slot_code = np.full(1 << self._bits, -1, dtype=np.int64)
            self._fill(np.arange(len(self.keys)))
        else:
            self._fill(np.arange(first, len(self.keys)))

    def _widen(self, width: int) -> None:
        if width > self._code_bytes.shape[1]:
            wider = np.zeros((self._code_bytes.shape[0], width), dtype=np.uint8)
            wider[:, : self._code_bytes.shape[1]] = self._code_bytes
            self._code_bytes = wider

    def _fill(self, codes: np.ndarray) -> None:
        """Put these inner ids in the table: in their own slot, else in its neighbour (slot ^ 1),
        else nowhere (they are then found through `keys`). Of ids competing, the first wins."""
        codes = codes[self._code_width[codes] >= 0]
        for probe in (0, 1):
            slots = (self._code_hash[codes] >> np.uint64(64 - self._bits)).astype(np.intp) ^ probe
            unique_slots, first = np.unique(slots, return_index=True)
            empty = self._slot_code[unique_slots] < 0
            placed = codes[first[empty]]
            self._slot_code[unique_slots[empty]] = placed
            self._slot_hash[unique_slots[empty]] = self._code_hash[placed]
            codes = np.setdiff1d(codes, placed, assume_unique=True)


def _hash_rows(words: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row (its zero-padded bytes and its width), well mixed in the top bits."""
    hashes = widths.astype(np.uint64) * _HASH_MULTIPLIER + _HASH_SEED
    for column in range(words.shape[1]):
        hashes ^= words[:, column]
        hashes *= _HASH_MULTIPLIER
        hashes ^= hashes >> np.uint64(29)
    hashes *= _HASH_MULTIPLIER
    return hashes


def _numbers(block: _Block, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fields as float64, and the rows left for `float()` to parse.

    Parsed here: an optional '-' then digits with at most one '.', 15 characters at most besides
    the sign. The digits (the dot taken out) read as one integer below 10**15, exact in float64,
    and one division by a power of ten, correctly rounded, gives the double nearest to the
    decimal: exactly what `float()` gives."""
    n = starts.size
    widths = ends - starts
    if n == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.intp)
    width = 8 if int(widths.max()) <= 8 else 16
    columns = np.arange(width)
    chars = block.windows(ends - width, width)  # right-aligned: the last column is the last character
    words = _words(chars)
    inside = _byte_masks(width, left=False)[np.minimum(widths, width)]
    words[:] = (words & inside) | (_ASCII_ZEROS & ~inside)  # leading zeros change nothing
    first = np.maximum(width - widths, 0)
    negative = (widths > 0) & (chars[np.arange(n), np.minimum(first, width - 1)] == _MINUS)
    chars[np.flatnonzero(negative), first[negative]] = _ZERO
    dots = chars == _DOT
    n_dots = _count_per_row(dots)
    n_digits = widths - n_dots - negative
    good = (
        ~_any_per_row(_words(~(((chars - np.uint8(_ZERO)) <= 9) | dots)))
        & (n_dots <= 1)
        & (n_digits >= 1)
        & (n_digits + n_dots <= _MAX_FAST_DIGITS)
        & (widths <= width)
    )
    scale = np.zeros(n, dtype=np.intp)
    dotted = np.flatnonzero(good & (n_dots == 1))
    if dotted.size:  # take the dot out: the digits before it move one column right
        dot_column = dots[dotted].argmax(axis=1)
        source = columns - (columns <= dot_column[:, None])
        moved = np.take_along_axis(chars[dotted], np.maximum(source, 0), axis=1)
        moved[source < 0] = _ZERO
        chars[dotted] = moved
        scale[dotted] = width - 1 - dot_column
    whole = np.zeros(n, dtype=np.uint64)
    for column in range(words.shape[1]):
        whole = whole * np.uint64(10**8) + _eight_digits(words[:, column])
    numbers: np.ndarray = whole.astype(np.float64) / _POW10[scale]
    numbers[negative] = -numbers[negative]
    return numbers, np.flatnonzero(~good)


def _eight_digits(words: np.ndarray) -> np.ndarray:
    """The value of 8 ASCII digits in each uint64 (the first, most significant, in the low byte):
    pairs, then fours, then all eight combined in place (each step fits its lane: no carry)."""
    values = words - _ASCII_ZEROS
    values = (values * np.uint64(10) + (values >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    values = (values * np.uint64(100) + (values >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    values = (values * np.uint64(10000) + (values >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return values


class _SnapshotParser:
    def __init__(self) -> None:
        self.header: list[str] | None = None
        self.columns = 0
        self.rows = 0  # data rows parsed so far (the header is row 1)
        self.users = _IdIndex()
        self.items = _IdIndex()
        self.users_column = _GrowingArray(np.int32)
        self.items_column = _GrowingArray(np.int32)
        self.ratings_column = _GrowingArray(np.float64)
        self.timestamps_column = _GrowingArray(np.float64)

    def feed(self, block: bytes, final: bool) -> int:
        """Parse the complete records at the start of `block` (all of it when `final`); return
        how many bytes were consumed."""
        start = 0
        if self.header is None:
            start = self._header(block, final)
            if self.header is None:
                return 0
        if final:
            end = len(block)
        elif b'"' in block:
            ends = _record_ends(np.frombuffer(block, dtype=np.uint8)[start:])
            end = start + int(ends[-1]) + 1 if ends.size else start
        else:
            end = block.rfind(b"\n", start) + 1
            end = max(end, start)
        if end > start:
            self._records(block[start:end])
        return end

    def _header(self, block: bytes, final: bool) -> int:
        ends = _record_ends(np.frombuffer(block, dtype=np.uint8))
        if ends.size == 0 and not final:
            return 0
        end = int(ends[0]) + 1 if ends.size else len(block)
        try:
            text = block[:end].decode("utf-8")
        except UnicodeDecodeError:
            raise _not_utf8(1) from None
        header = next(csv.reader(io.StringIO(text, newline="")), None)
        if header is None or tuple(header[:3]) != SNAPSHOT_COLUMNS:
            raise DatasetError(f"not a ratings snapshot: header is {header!r}")
        self.header, self.columns = header, len(header)
        return end

    def _records(self, piece: bytes) -> None:
        """Complete records: runs of plain ones are parsed with numpy, the others with `csv`."""
        if not piece.isascii():
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(self.rows + 2 + piece.count(b"\n", 0, error.start)) from None
        if b'"' not in piece and b"\r" not in piece:
            self._plain(piece)
            return
        buf = np.frombuffer(piece, dtype=np.uint8)
        bounds = np.concatenate([[0], _record_ends(buf) + 1])
        if bounds[-1] != len(piece):
            bounds = np.append(bounds, len(piece))
        special = np.flatnonzero((buf == _QUOTE) | (buf == _CR))
        marked = np.zeros(bounds.size - 1, dtype=np.bool_)
        marked[np.searchsorted(bounds, special, side="right") - 1] = True
        change = np.flatnonzero(np.diff(marked.astype(np.int8))) + 1
        for a, b in itertools.pairwise([0, *change.tolist(), marked.size]):
            part = piece[int(bounds[a]) : int(bounds[b])]
            if marked[a]:
                self._quoted(part)
            else:
                self._plain(part)

    def _plain(self, piece: bytes) -> None:
        """Records without quotes or carriage returns: every comma and newline ends a field."""
        if not piece.endswith(b"\n"):
            piece += b"\n"
        block = _Block(piece)
        buf = block.buf
        separators = np.flatnonzero((buf == _COMMA) | (buf == _LF))
        width = self.columns
        n = separators.size // width
        found = buf[separators]
        if (
            separators.size != n * width
            or np.count_nonzero(found[width - 1 :: width] == _LF) != n
            or (np.count_nonzero(found == _LF) != n)
        ):
            self._quoted(piece)  # a row with too few or too many fields: the csv path names it
            return
        ends = separators.reshape(n, width)
        starts = np.empty_like(ends)
        starts[:, 1:] = ends[:, :-1] + 1
        starts[0, 0] = 0
        starts[1:, 0] = ends[:-1, -1] + 1

        def numbers(c: int, what: str) -> np.ndarray:
            values, others = _numbers(block, starts[:, c], ends[:, c])
            if others.size:
                self._floats(block.fields(starts[others, c], ends[others, c]), others, values, what)
            return values

        self._add(
            self.users.codes(block, starts[:, 0], ends[:, 0]),
            self.items.codes(block, starts[:, 1], ends[:, 1]),
            numbers(2, "rating"),
            numbers(3, "timestamp") if width > 3 else None,
        )

    def _quoted(self, piece: bytes) -> None:
        """Records parsed by the `csv` module (quoted fields, carriage returns)."""
        rows: list[list[str]] = []
        try:
            for row in csv.reader(io.StringIO(piece.decode("utf-8"), newline="")):
                if len(row) != self.columns:
                    raise DatasetError(
                        f"row {self.rows + len(rows) + 2}: {len(row)} fields, where the header has"
                        f" {self.columns}"
                    )
                rows.append(row)
        except csv.Error as error:
            raise DatasetError(f"row {self.rows + len(rows) + 2}: {error}") from None
        columns: list[tuple[str, ...]] = list(zip(*rows)) if rows else [()] * self.columns
        every = np.arange(len(rows))

        def numbers(c: int, what: str) -> np.ndarray:
            values = np.zeros(len(rows), dtype=np.float64)
            self._floats(columns[c], every, values, what)
            return values

        self._add(
            self.users.codes_of_keys([value.encode("utf-8") for value in columns[0]]),
            self.items.codes_of_keys([value.encode("utf-8") for value in columns[1]]),
            numbers(2, "rating"),
            numbers(3, "timestamp") if self.columns > 3 else None,
        )

    def _floats(self, texts: Sequence[bytes | str], rows: np.ndarray, out: np.ndarray, what: str) -> None:
        """out[rows] = float(texts), as `ratings_from_rows` parses a rating (finite) or a
        timestamp (empty: NaN, a NULL)."""
        for k, text in zip(rows.tolist(), texts):
            if what == "timestamp" and not text:
                out[k] = math.nan
                continue
            try:
                value = float(text)
            except ValueError:
                raise DatasetError(
                    f"row {self.rows + k + 2}: {what} {_str(text)!r} is not a number"
                ) from None
            if what == "rating" and not math.isfinite(value):
                raise DatasetError(f"row {self.rows + k + 2}: rating {_str(text)!r} is not a finite number")
            out[k] = value

    def _add(
        self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, stamps: np.ndarray | None
    ) -> None:
        self.rows += users.size
        self.users_column.extend(users)
        self.items_column.extend(items)
        self.ratings_column.extend(ratings)
        if stamps is not None:
            self.timestamps_column.extend(stamps)

    def result(self) -> Ratings:
        return Ratings(
            user_ids=self.users.ids(),
            item_ids=self.items.ids(),
            users=self.users_column.result(),
            items=self.items_column.result(),
            ratings=self.ratings_column.result(),
            timestamps=self.timestamps_column.result() if self.columns > 3 else None,
        )


class _GrowingArray:
    """A 1-d array grown in place by a quarter at a time: numpy's resize reallocates, which for
    large arrays moves pages rather than copying them, so the parsed columns never exist twice."""

    def __init__(self, dtype: type) -> None:
        self.array: np.ndarray = np.zeros(1 << 16, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + values.size
        if end > self.array.size:
            self.array.resize(max(end, self.array.size * 5 // 4), refcheck=False)
        self.array[self.size : end] = values
        self.size = end

    def result(self) -> np.ndarray:
        self.array.resize(self.size, refcheck=False)
        return self.array


def _str(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def ratings_from_rows(rows: Iterable[list[str] | tuple[Any, ...]]) -> Ratings:
    """Ratings from rows of (user, item, rating[, timestamp]) of any types: ids become `str`,
    numbers `float`; inner ids follow first appearance."""
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users = array("i")
    items = array("i")
    values = array("d")
    stamps = array("d")
    with_time = False
    for line, row in enumerate(rows, start=2):
        user, item, text = str(row[0]), str(row[1]), row[2]
        try:
            value = float(text)
        except ValueError:
            raise DatasetError(f"row {line}: rating {text!r} is not a number") from None
        if not math.isfinite(value):
            raise DatasetError(f"row {line}: rating {text!r} is not a finite number")
        users.append(user_index.setdefault(user, len(user_index)))
        items.append(item_index.setdefault(item, len(item_index)))
        values.append(value)
        if len(row) > 3:
            with_time = True
            stamps.append(float(row[3]) if row[3] not in ("", None) else math.nan)
    return Ratings(
        user_ids=list(user_index),
        item_ids=list(item_index),
        users=np.frombuffer(users, dtype=np.int32).copy(),
        items=np.frombuffer(items, dtype=np.int32).copy(),
        ratings=np.frombuffer(values, dtype=np.float64).copy(),
        timestamps=np.frombuffer(stamps, dtype=np.float64).copy() if with_time else None,
    )
