"""The published model as plain arrays: what a predictor needs, and nothing that must be unpickled.

This module imports numpy only (no Surprise): app servers load it for fold-in.

`model.npz` is loaded with `allow_pickle=False`. Ids are stored as one UTF-8 byte array plus
offsets, so any string (commas, quotes, newlines, NUL, any script) survives exactly.

The model's `kind` says how a predictor scores it:
- the name of a Surprise algorithm with a kernel (`kernels/`): `arrays` holds what that kernel
  needs, and whole blocks of users are scored at once;
- `refit` (an algorithm without a kernel, such as a user's own `AlgoBase` subclass): the predictor
  refits the algorithm from the dataset snapshot with the same parameters and seed, then calls its
  `estimate` for every (user, item) pair. Correct, but slow; the model metadata says so.

Split models. Most of a model's size grows with its users (their factors, the items each rated),
yet a predictor needs only its own shard's users. When the kernel says which of its arrays are
the users' (a `UserLayout`), Train writes `model.npz` with the item side only
(`users_in_parts`) and one `UserPart` per shard, holding that shard's users in shard order; a
predictor joins the two (`ModelArrays.with_users`). Memory per predictor then stays flat however
many users there are. Kernels whose user side cannot be cut (user-based k-NN compares every pair
of users; NormalPredictor draws by inner id; `refit`) keep one whole `model.npz`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .contracts import ObjectRecord
from .errors import ModelFormatError, ModelIntegrityError

FORMAT_VERSION = 3
KIND_REFIT = "refit"


def object_record(data: bytes) -> ObjectRecord:
    """What Train records of each model object it writes, for its readers to check."""
    return ObjectRecord(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def check_object(data: bytes, recorded: Mapping[str, Any] | None, what: str) -> bytes:
    """`data` if it is the object `recorded` describes, else ModelIntegrityError.

    A model that is not the one Train wrote (truncated, replaced, or from another fit) would
    otherwise fail somewhere in numpy's zip reading, or load and score with the wrong arrays.
    `recorded` is None for a run Train wrote before it recorded objects: nothing to check."""
    if recorded is None:
        return data
    if len(data) != recorded["bytes"]:
        raise ModelIntegrityError(f"{what} holds {len(data)} bytes, Train wrote {recorded['bytes']}")
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise ModelIntegrityError(f"{what} does not match the SHA-256 Train recorded")
    return data


def encode_strings(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def decode_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    bounds = offsets.tolist()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(bounds)]


def utf8_order(ids: list[str]) -> np.ndarray:
    """Indices of `ids` sorted by their UTF-8 bytes: an order every language can reproduce."""
    return np.asarray(
        sorted(range(len(ids)), key=lambda k: ids[k].encode("utf-8", "surrogatepass")),
        dtype=np.int64,
    )


@dataclass(frozen=True)
class UserLayout:
    """Which kernel arrays belong to the users, and how they are cut into a shard's user part."""

    rows: tuple[str, ...] = ()  # first axis is the inner user id
    ratings: tuple[str, ...] = ()  # one value per (user, rated item), aligned with seen_indices
    indptr: tuple[str, ...] = ()  # copies of seen_indptr, under the kernel's own name

    @property
    def names(self) -> tuple[str, ...]:
        return self.rows + self.ratings + self.indptr


def csr_rows(indptr: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the indptr of these users' rows, their positions in the whole CSR's values), in order,
    gathered without a Python loop."""
    starts = indptr[users]
    lengths = indptr[users + 1] - starts
    part_indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=part_indptr[1:])
    positions = np.repeat(starts - part_indptr[:-1], lengths) + np.arange(int(part_indptr[-1]))
    return part_indptr, positions


@dataclass
class UserPart:
    """One shard's users: their ids in shard order, what each rated, their kernel arrays."""

    user_ids: list[str]
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        users, offsets = encode_strings(self.user_ids)
        arrays: dict[str, Any] = {
            "format_version": np.int64(FORMAT_VERSION),
            "user_ids": users,
            "user_offsets": offsets,
            "seen_indptr": self.seen_indptr,
            "seen_indices": self.seen_indices,
        }
        return _npz_bytes(arrays, self.arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> UserPart:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            _check_version(npz)
            return cls(
                user_ids=decode_strings(npz["user_ids"], npz["user_offsets"]),
                seen_indptr=npz["seen_indptr"],
                seen_indices=npz["seen_indices"],
                arrays=_kernel_arrays(npz),
            )


def _npz_bytes(arrays: dict[str, Any], kernel_arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz of the arrays, the kernel's own under a `kernel_` prefix (see `_kernel_arrays`)."""
    named: dict[str, Any] = {**arrays, **{f"kernel_{name}": value for name, value in kernel_arrays.items()}}
    buffer = io.BytesIO()
    np.savez(buffer, **named)
    return buffer.getvalue()


def _check_version(npz: Any) -> None:
    version = int(npz["format_version"])
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"model format {version} is not {FORMAT_VERSION}")


def _kernel_arrays(npz: Any) -> dict[str, np.ndarray]:
    return {name.removeprefix("kernel_"): npz[name] for name in npz.files if name.startswith("kernel_")}


@dataclass
class ModelArrays:
    kind: str
    user_ids: list[str]
    item_ids: list[str]
    seen_indptr: np.ndarray  # CSR over inner user ids: items each user rated
    seen_indices: np.ndarray
    item_counts: np.ndarray  # ratings per item, for the tie rule and the fallback
    global_mean: float
    rating_scale: tuple[float, float]
    unknown_user_scores: np.ndarray  # Surprise's estimate of every item for a never-seen user
    user_order: np.ndarray  # inner user ids in UTF-8 byte order of their raw ids: the shard order
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # the kernel's own arrays
    users_in_parts: bool = False  # the item side only: each shard's users are in a UserPart

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_index(self) -> dict[str, int]:
        """Raw item id -> inner id, built once per model."""
        index: dict[str, int] | None = self.__dict__.get("_item_index")
        if index is None:
            index = {raw: inner for inner, raw in enumerate(self.item_ids)}
            self.__dict__["_item_index"] = index
        return index

    def seen(self, user: int) -> np.ndarray:
        return self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]

    def unseen_counts(self, users: np.ndarray, at_most: int) -> np.ndarray:
        """min(at_most, items each user has not rated), exactly, for these inner users.

        What a user rated may list an item twice (a snapshot's repeated pair), so the count of
        ratings is only a bound; the distinct items are counted where the bound could be wrong."""
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.seen_indptr[users], self.seen_indptr[users + 1]
        bound = self.n_items - (ends - starts)  # at most the true count
        counts: np.ndarray = np.minimum(at_most, np.maximum(bound, 0))
        for k in np.flatnonzero(bound < at_most).tolist():
            distinct = np.unique(self.seen_indices[starts[k] : ends[k]]).size
            counts[k] = min(at_most, self.n_items - distinct)
        return counts

    def non_finite(self) -> list[tuple[str, int, int]]:
        """(name, non-finite values, values) of every array holding NaN or ±Infinity."""
        named = {**self.arrays, "unknown_user_scores": self.unknown_user_scores}
        named["global_mean"] = np.asarray(self.global_mean, dtype=np.float64)
        found = []
        for name, values in named.items():
            if values.dtype.kind in "fc":
                bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                if bad:
                    found.append((name, bad, int(values.size)))
        return found

    def tie_rank(self) -> np.ndarray:
        """Rank of every item under the tie rule: more ratings first, then lower inner id."""
        order = np.lexsort((np.arange(self.n_items), -self.item_counts))
        rank = np.empty(self.n_items, dtype=np.int64)
        rank[order] = np.arange(self.n_items)
        return rank

    def item_side(self, layout: UserLayout) -> ModelArrays:
        """This model without its users, for `model.npz` when the users travel in parts."""
        return ModelArrays(
            kind=self.kind,
            user_ids=[],
            item_ids=self.item_ids,
            seen_indptr=np.zeros(1, dtype=np.int64),
            seen_indices=np.zeros(0, dtype=self.seen_indices.dtype),
            item_counts=self.item_counts,
            global_mean=self.global_mean,
            rating_scale=self.rating_scale,
            unknown_user_scores=self.unknown_user_scores,
            user_order=np.zeros(0, dtype=np.int64),
            arrays={name: value for name, value in self.arrays.items() if name not in layout.names},
            users_in_parts=True,
        )

    def user_part(self, users: np.ndarray, layout: UserLayout) -> UserPart:
        """The part holding these inner users, renumbered 0.. in the given order."""
        users = np.asarray(users, dtype=np.int64)
        indptr, positions = csr_rows(self.seen_indptr, users)
        arrays = {name: self.arrays[name][users] for name in layout.rows}
        arrays.update({name: self.arrays[name][positions] for name in layout.ratings})
        arrays.update({name: indptr.astype(self.arrays[name].dtype) for name in layout.indptr})
        return UserPart(
            user_ids=[self.user_ids[u] for u in users.tolist()],
            seen_indptr=indptr,
            seen_indices=self.seen_indices[positions],
            arrays=arrays,
        )

    def with_users(self, part: UserPart) -> ModelArrays:
        """The item side joined with one shard's users: a model whose users are the part's."""
        if not self.users_in_parts:
            raise ValueError("this model holds its users already")
        return ModelArrays(
            kind=self.kind,
            user_ids=part.user_ids,
            item_ids=self.item_ids,
            seen_indptr=part.seen_indptr,
            seen_indices=part.seen_indices,
            item_counts=self.item_counts,
            global_mean=self.global_mean,
            rating_scale=self.rating_scale,
            unknown_user_scores=self.unknown_user_scores,
            user_order=np.arange(len(part.user_ids), dtype=np.int64),
            arrays={**self.arrays, **part.arrays},
        )

    def to_bytes(self) -> bytes:
        users, user_offsets = encode_strings(self.user_ids)
        items, item_offsets = encode_strings(self.item_ids)
        arrays: dict[str, Any] = {
            "format_version": np.int64(FORMAT_VERSION),
            "kind": np.str_(self.kind),
            "user_ids": users,
            "user_offsets": user_offsets,
            "item_ids": items,
            "item_offsets": item_offsets,
            "seen_indptr": self.seen_indptr,
            "seen_indices": self.seen_indices,
            "item_counts": self.item_counts,
            "global_mean": np.float64(self.global_mean),
            "rating_scale": np.asarray(self.rating_scale, dtype=np.float64),
            "unknown_user_scores": self.unknown_user_scores,
            "user_order": self.user_order,
            "users_in_parts": np.bool_(self.users_in_parts),
        }
        return _npz_bytes(arrays, self.arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelArrays:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            _check_version(npz)
            scale = npz["rating_scale"]
            return cls(
                kind=str(npz["kind"]),
                user_ids=decode_strings(npz["user_ids"], npz["user_offsets"]),
                item_ids=decode_strings(npz["item_ids"], npz["item_offsets"]),
                seen_indptr=npz["seen_indptr"],
                seen_indices=npz["seen_indices"],
                item_counts=npz["item_counts"],
                global_mean=float(npz["global_mean"]),
                rating_scale=(float(scale[0]), float(scale[1])),
                unknown_user_scores=npz["unknown_user_scores"],
                user_order=npz["user_order"],
                arrays=_kernel_arrays(npz),
                users_in_parts=bool(npz["users_in_parts"]),
            )
