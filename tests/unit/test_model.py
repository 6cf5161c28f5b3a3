"""The published model: plain arrays that round-trip exactly and load without pickle."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from surprise import SVD, AlgoBase, BaselineOnly

from recommender.model import KIND_REFIT, ModelArrays, decode_strings, encode_strings, utf8_order
from recommender.snapshot import ratings_from_rows
from recommender.training import fit, model_from_fit

TRICKY = [
    "plain",
    "a,b",
    'say "hi"',
    "'single'",
    "line1\nline2",
    "cr\r\nlf",
    "nul\x00byte",
    "😀 emoji",
    "line\u2028separator",
    "para\u2029graph",
    "",
    "x" * 10_000,
    "ünïcödé",
    "\uff61",
    "\U0001f600",
    "tab\there",
    "\\backslash",
]


def _rows(n_users: int = 25, n_items: int = 15, seed: int = 5) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=6, replace=False).tolist():
            rows.append((f"user {u}", f"item,{i}", str(int(rng.integers(1, 6)))))
    return rows


def test_encode_decode_strings() -> None:
    data, offsets = encode_strings(TRICKY)
    assert data.dtype == np.uint8 and offsets.dtype == np.int64
    assert offsets.shape == (len(TRICKY) + 1,)
    assert offsets[0] == 0 and offsets[-1] == data.size
    assert data.tobytes() == "".join(TRICKY).encode("utf-8")
    assert decode_strings(data, offsets) == TRICKY


def test_encode_strings_lengths_are_utf8_bytes() -> None:
    data, offsets = encode_strings(["a", "é", "😀", ""])
    assert np.diff(offsets).tolist() == [1, 2, 4, 0]
    assert decode_strings(data, offsets) == ["a", "é", "😀", ""]


def test_encode_empty_list() -> None:
    data, offsets = encode_strings([])
    assert decode_strings(data, offsets) == []


def test_utf8_order_differs_from_utf16_order() -> None:
    ids = ["\U0001f600", "\uff61", "b", "a"]
    # UTF-16 code units put the emoji (a surrogate pair, 0xD83D...) before U+FF61
    assert sorted(ids, key=lambda s: s.encode("utf-16-be"))[2:] == ["\U0001f600", "\uff61"]
    order = utf8_order(ids).tolist()
    assert [ids[k] for k in order] == ["a", "b", "\uff61", "\U0001f600"]
    assert order == [3, 2, 1, 0]


def test_utf8_order_is_byte_order() -> None:
    order = utf8_order(TRICKY)
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(len(TRICKY)))
    keys = [TRICKY[k].encode("utf-8") for k in order.tolist()]
    assert keys == sorted(keys)
    # a prefix sorts before its extensions, and upper case before lower case
    assert [["ab", "a", "B"][k] for k in utf8_order(["ab", "a", "B"]).tolist()] == ["B", "a", "ab"]


def _arrays(user_ids: list[str], item_ids: list[str]) -> ModelArrays:
    rng = np.random.default_rng(1)
    n_users, n_items = len(user_ids), len(item_ids)
    seen = [sorted(rng.choice(n_items, size=2, replace=False).tolist()) for _ in range(n_users)]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in seen])
    return ModelArrays(
        kind="SVD",
        user_ids=user_ids,
        item_ids=item_ids,
        seen_indptr=indptr,
        seen_indices=np.asarray([i for s in seen for i in s], dtype=np.int32),
        item_counts=rng.integers(1, 9, size=n_items),
        global_mean=3.141592653589793,
        rating_scale=(0.5, 5.0),
        unknown_user_scores=rng.normal(size=n_items),
        user_order=utf8_order(user_ids),
        arrays={
            "pu": rng.normal(size=(n_users, 4)),
            "qi": rng.normal(size=(n_items, 4)),
            "bu": rng.normal(size=n_users),
            "bi": rng.normal(size=n_items),
            "k": np.asarray(40, dtype=np.int64),
        },
    )


def _assert_same(a: ModelArrays, b: ModelArrays) -> None:
    assert a.kind == b.kind
    assert a.user_ids == b.user_ids
    assert a.item_ids == b.item_ids
    for name in ("seen_indptr", "seen_indices", "item_counts", "unknown_user_scores", "user_order"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype, name
        assert np.array_equal(left, right), name
    assert a.global_mean == b.global_mean
    assert a.rating_scale == b.rating_scale
    assert set(a.arrays) == set(b.arrays)
    for name, value in a.arrays.items():
        assert value.dtype == b.arrays[name].dtype
        assert np.array_equal(value, b.arrays[name]), name


def test_round_trip_with_tricky_ids() -> None:
    users = TRICKY
    items = [*reversed(TRICKY), "extra item"]
    model = _arrays(users, items)
    data = model.to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object, name
        assert {"user_ids", "item_ids", "kernel_pu", "kernel_qi", "kind"} <= set(npz.files)
    back = ModelArrays.from_bytes(data)
    _assert_same(model, back)
    assert back.to_bytes() == data


def test_round_trip_of_a_fitted_model() -> None:
    fitted = fit(ratings_from_rows(_rows()), "SVD", {"n_factors": 4, "n_epochs": 5}, None)
    model = model_from_fit(fitted)
    _assert_same(model, ModelArrays.from_bytes(model.to_bytes()))


def test_wrong_format_version_is_refused() -> None:
    data = _arrays(["u"], ["i", "j"]).to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["format_version"] = np.int64(99)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match="99"):
        ModelArrays.from_bytes(buffer.getvalue())


def _check_structure(model: ModelArrays, ts: Any) -> None:
    assert model.n_users == ts.n_users and model.n_items == ts.n_items
    assert model.user_ids == [ts.to_raw_uid(u) for u in range(ts.n_users)]
    assert model.item_ids == [ts.to_raw_iid(i) for i in range(ts.n_items)]
    for u in range(model.n_users):
        assert model.seen(u).tolist() == [i for i, _ in ts.ur[u]]
    assert model.item_counts.tolist() == [len(ts.ir[i]) for i in range(ts.n_items)]
    assert model.global_mean == ts.global_mean
    keys = [model.user_ids[k].encode() for k in model.user_order.tolist()]
    assert keys == sorted(keys)


@pytest.mark.parametrize("biased", [True, False])
def test_model_from_svd(biased: bool) -> None:
    fitted = fit(ratings_from_rows(_rows()), "SVD", {"n_factors": 4, "n_epochs": 8, "biased": biased}, None)
    algo = fitted.algorithm
    assert isinstance(algo, SVD)
    model = model_from_fit(fitted)
    assert model.kind == "SVD"
    assert np.array_equal(model.arrays["pu"], algo.pu)
    assert np.array_equal(model.arrays["qi"], algo.qi)
    if biased:
        assert set(model.arrays) == {"pu", "qi", "bu", "bi"}
        assert np.array_equal(model.arrays["bu"], algo.bu)
        assert np.array_equal(model.arrays["bi"], algo.bi)
    else:
        assert set(model.arrays) == {"pu", "qi"}
    assert model.rating_scale == (1.0, 5.0)
    _check_structure(model, fitted.trainset)
    _check_unknown_user_scores(model, algo)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tests.unit.custom_algorithms:ShiftedBaseline", BaselineOnly),
        ("tests.unit.custom_algorithms:ItemMean", AlgoBase),
    ],
)
def test_algorithms_without_a_kernel_are_refit(name: str, cls: type) -> None:
    fitted = fit(ratings_from_rows(_rows()), name, {}, (1.0, 5.0))
    model = model_from_fit(fitted)
    assert isinstance(fitted.algorithm, cls)
    assert model.kind == KIND_REFIT
    assert model.arrays == {}
    _check_structure(model, fitted.trainset)
    _check_unknown_user_scores(model, fitted.algorithm)


def _check_unknown_user_scores(model: ModelArrays, algo: Any) -> None:
    assert model.unknown_user_scores.shape == (model.n_items,)
    for raw_user in ("never seen", "UKN__"):
        expected = [algo.predict(raw_user, raw_item, clip=False).est for raw_item in model.item_ids]
        assert model.unknown_user_scores.tolist() == pytest.approx(expected, abs=1e-12)
