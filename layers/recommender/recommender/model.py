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
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 2
KIND_REFIT = "refit"


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

    def tie_rank(self) -> np.ndarray:
        """Rank of every item under the tie rule: more ratings first, then lower inner id."""
        order = np.lexsort((np.arange(self.n_items), -self.item_counts))
        rank = np.empty(self.n_items, dtype=np.int64)
        rank[order] = np.arange(self.n_items)
        return rank

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
        }
        arrays.update({f"kernel_{name}": value for name, value in self.arrays.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelArrays:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            version = int(npz["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"model format {version} is not {FORMAT_VERSION}")
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
                arrays={
                    name.removeprefix("kernel_"): npz[name]
                    for name in npz.files
                    if name.startswith("kernel_")
                },
            )
