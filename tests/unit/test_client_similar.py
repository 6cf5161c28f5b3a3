"""Reading an item's similar items the way an app server does (`Recommendations.similar_to` and
`recommender similar`): from a folder with the bucket's layout, item shards beside user shards."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.client import ITEMS, Recommendations, _ShardIndex
from recommender.contracts import ItemShard
from recommender.errors import RecommendationsError
from recommender.model import ModelArrays, utf8_order
from recommender.sharding import decode_shard, encode_similar, item_shard_items
from recommender.similarity import MEASURES, SIMILAR_RULE, ItemSimilarity, measure_of
from recommender.storage import RunPaths, relative_key, sha256_hex
from tests.unit.test_client import BAD_COUNTS, PREFIX, RUN_ID, TOP_N, Published, _publish, _rewrite_manifest

ITEM_SHARDS = 4
MIN_SUPPORT = 2
RARE = "rare item"  # rated once: below MIN_SUPPORT, so in the run without a list
# ids whose UTF-8 byte order differs from other orders, or that break lines or JSON, or are empty
TRICKY_ITEMS = ["", "line\nbreak", "sep\u2028arator", 'q"uote', "😀", "\U0010ffff", "é", "e\u0301", "\uffff"]


def _rows(seed: int) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    items = [f"item {i:02d}" for i in range(24)] + TRICKY_ITEMS
    rows = []
    for u in range(30):
        for i in rng.choice(len(items), size=8, replace=False).tolist():
            rows.append((f"user{u:02d}", items[i], str(int(rng.integers(1, 6)))))
    rows.append(("user00", RARE, "5"))
    return rows


@dataclass
class Similar:
    """A published run with similar items, and what its item shards hold."""

    published: Published
    section: dict[str, Any]  # the manifest's `similar`
    lists: dict[str, tuple[list[str], list[float]]]  # item -> (items, scores), read back from the shards

    @property
    def root(self) -> Path:
        return self.published.root


def _write_similar(root: Path, model: ModelArrays, paths: RunPaths) -> dict[str, Any]:
    """The run's items cut into ITEM_SHARDS ranges of UTF-8 byte order, each item's similar items
    written as a predictor writes them; returns the manifest's section as Merge writes it."""
    order = utf8_order(model.item_ids)
    bounds = np.linspace(0, model.n_items, ITEM_SHARDS + 1).round().astype(int).tolist()
    similarity = ItemSimilarity(model, MIN_SUPPORT)
    shards: list[dict[str, Any]] = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        item_shard = ItemShard(
            start=start,
            end=end,
            items=end - start,
            first_item=model.item_ids[int(order[start])],
            last_item=model.item_ids[int(order[end - 1])],
            min_support=MIN_SUPPORT,
        )
        data, count = encode_similar(model, similarity.lists(item_shard_items(model, item_shard), TOP_N))
        key = relative_key(PREFIX, paths.similar_object(index))
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
        shards.append(
            {
                "index": index,
                "key": key,
                "items": count,
                "first_item": item_shard["first_item"],
                "last_item": item_shard["last_item"],
                "bytes": len(data),
                "sha256": sha256_hex(data),
                "seconds": 0.01,
            }
        )
    measure = measure_of(model)
    empty = sum(not r["items"] for s in shards for r in decode_shard((root / s["key"]).read_bytes()))
    return {
        "measure": measure,
        "definition": MEASURES[measure],
        "min_support": MIN_SUPPORT,
        "ranking": SIMILAR_RULE,
        "items": model.n_items,
        "items_without_list": empty,
        "shards": shards,
    }


def _publish_similar(root: Path, seed: int = 3, run_id: str = RUN_ID) -> Similar:
    published = _publish(root, _rows(seed), run_id, similar=_write_similar)
    section = published.manifest["similar"]
    lists = {
        r["item"]: (r["items"], r["scores"])
        for shard in section["shards"]
        for r in decode_shard((root / shard["key"]).read_bytes())
    }
    return Similar(published, section, lists)


@pytest.fixture
def run(tmp_path: Path) -> Similar:
    return _publish_similar(tmp_path)


def test_the_fixture_has_what_the_tests_need(run: Similar) -> None:
    assert len(run.section["shards"]) == ITEM_SHARDS
    assert set(run.lists) == set(run.published.model.item_ids)  # every item of the run, once
    assert set(TRICKY_ITEMS) <= set(run.lists)
    assert run.lists[RARE] == ([], [])
    assert sum(bool(items) for items, _ in run.lists.values()) > len(run.lists) // 2


def test_every_item_gets_its_published_list(run: Similar) -> None:
    recs = Recommendations.open(run.root)
    for item, (items, scores) in run.lists.items():
        answer = recs.similar_to(item)
        assert answer.item == item and answer.run_id == RUN_ID
        assert answer.status == ("similar" if items else "no-list")
        assert (answer.items, answer.scores) == (items, scores)
        assert item not in answer.items and len(answer.items) <= TOP_N
        shard = recs.similar_shard_for(item)
        assert shard is not None
        assert item in {r["item"] for r in decode_shard((run.root / shard["key"]).read_bytes())}


def test_first_and_last_item_of_every_item_shard(run: Similar) -> None:
    recs = Recommendations.open(run.root)
    for shard in run.section["shards"]:
        for item in (shard["first_item"], shard["last_item"]):
            assert recs.similar_shard_for(item) == shard
            assert (recs.similar_to(item).items, recs.similar_to(item).scores) == run.lists[item]


def test_an_item_below_min_support_gets_an_empty_answer_that_says_so(run: Similar) -> None:
    answer = Recommendations.open(run.root).similar_to(RARE)
    assert (answer.items, answer.scores, answer.status) == ([], [], "no-list")
    assert not any(RARE in items for items, _ in run.lists.values())  # and it is in no list


def _with_list(run: Similar) -> str:
    return next(item for item, (items, _) in sorted(run.lists.items()) if len(items) >= 3)


@pytest.mark.parametrize("n", [1, 2, TOP_N, 100])
def test_n_truncates(run: Similar, n: int) -> None:
    item = _with_list(run)
    items, scores = run.lists[item]
    answer = Recommendations.open(run.root).similar_to(item, n=n)
    assert (answer.items, answer.scores) == (items[:n], scores[:n])
    assert answer.status == "similar"


def test_exclude_leaves_items_out_before_n_counts(run: Similar) -> None:
    recs = Recommendations.open(run.root)
    item = _with_list(run)
    items, scores = run.lists[item]
    banned = {items[0], items[2], "not an item"}
    answer = recs.similar_to(item, n=2, exclude=banned)
    kept = [(i, s) for i, s in zip(items, scores) if i not in banned]
    assert answer.items == [i for i, _ in kept][:2] and answer.scores == [s for _, s in kept][:2]
    everything = recs.similar_to(item, exclude=set(items))
    assert everything.items == [] and everything.status == "similar"  # the run has a list; all excluded


@pytest.mark.parametrize(("n", "error"), BAD_COUNTS)
def test_a_bad_n_is_refused(run: Similar, n: Any, error: type[Exception]) -> None:
    recs = Recommendations.open(run.root)
    for item in (_with_list(run), "not an item"):
        with pytest.raises(error, match="n must be a whole number >= 1, or None"):
            recs.similar_to(item, n=n)


@pytest.mark.parametrize("exclude", ["item 01", b"item 01", ["item 01", 7]])
def test_exclude_must_be_a_collection_of_item_ids(run: Similar, exclude: Any) -> None:
    with pytest.raises(TypeError, match="exclude must be a collection of item ids"):
        Recommendations.open(run.root).similar_to(_with_list(run), exclude=exclude)


def _unknown_items(run: Similar) -> list[str]:
    shards = run.section["shards"]
    between = shards[1]["last_item"] + "\x00"  # after one shard's range, before the next one's
    assert shards[1]["last_item"].encode() < between.encode() < shards[2]["first_item"].encode()
    last = max(run.lists, key=lambda i: i.encode())
    return [between, "\x00", "item 99", "ITEM 01", "item 1", last + "x", "e", "user00"]


def test_unknown_items_get_an_empty_answer_that_says_so(run: Similar) -> None:
    recs = Recommendations.open(run.root)
    for item in _unknown_items(run):
        assert item not in run.lists
        answer = recs.similar_to(item, n=3, exclude={"item 01"})
        assert (answer.item, answer.items, answer.scores) == (item, [], [])
        assert answer.status == "unknown-item" and answer.run_id == RUN_ID
    assert recs.similar_shard_for(max(run.lists, key=lambda i: i.encode()) + "x") is None


def test_a_run_published_before_similar_items_says_so(tmp_path: Path) -> None:
    published = _publish(tmp_path)
    assert "similar" not in published.manifest
    recs = Recommendations.open(tmp_path)
    for item in ("item 1", "not an item"):
        answer = recs.similar_to(item, n=3)
        assert (answer.items, answer.scores, answer.status) == ([], [], "not-published")
        assert recs.similar_shard_for(item) is None
    user = published.manifest["shards"][0]["first_user"]
    assert recs.for_user(user).items == published.expected[user][0]  # users are served as before


def test_a_corrupt_item_shard_is_refused_and_never_cached(run: Similar) -> None:
    shard = run.section["shards"][2]
    path = run.root / shard["key"]
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    recs = Recommendations.open(run.root)
    with pytest.raises(
        RecommendationsError, match=r"similar/shard-00002\.jsonl\.gz does not match .*checksum"
    ):
        recs.similar_to(shard["first_item"])
    other = run.section["shards"][0]["last_item"]
    assert recs.similar_to(other).items == run.lists[other][0]  # the other item shards still serve
    user = run.published.manifest["shards"][0]["first_user"]
    assert recs.for_user(user).items == run.published.expected[user][0]  # and so do the users'
    path.write_bytes(original)
    assert recs.similar_to(shard["first_item"]).items == run.lists[shard["first_item"]][0]


def test_an_item_shard_holding_other_than_its_items_is_refused(run: Similar) -> None:
    shards = [dict(s) for s in run.section["shards"]]
    shards[1]["items"] += 1
    _rewrite_manifest(run.published, similar={**run.section, "shards": shards})
    with pytest.raises(
        RecommendationsError, match=rf"shard-00001\.jsonl\.gz holds {shards[1]['items'] - 1} items"
    ):
        Recommendations.open(run.root).similar_to(shards[1]["first_item"])


def test_a_malformed_similar_section_is_refused_naming_the_field(run: Similar) -> None:
    shards = [dict(s) for s in run.section["shards"]]
    del shards[1]["first_item"]
    _rewrite_manifest(run.published, similar={**run.section, "shards": shards})
    with pytest.raises(RecommendationsError, match=r"similar\.shards\[1\]\.first_item: a required field"):
        Recommendations.open(run.root)


def test_a_refresh_serves_the_new_runs_lists(run: Similar) -> None:
    recs = Recommendations.open(run.root, refresh_seconds=0)
    item = _with_list(run)
    assert recs.similar_to(item).run_id == RUN_ID
    second = _publish_similar(run.root, seed=4, run_id="run-2")
    assert second.lists != run.lists
    for item, (items, scores) in second.lists.items():
        answer = recs.similar_to(item)
        assert answer.run_id == "run-2" and (answer.items, answer.scores) == (items, scores)


def test_user_and_item_shards_share_the_cache_without_colliding(run: Similar) -> None:
    recs = Recommendations.open(run.root)
    user = run.published.manifest["shards"][0]["first_user"]
    item = run.section["shards"][0]["first_item"]
    for _ in range(2):  # the second round answers from the cache
        assert recs.for_user(user).items == run.published.expected[user][0]
        assert recs.similar_to(item).items == run.lists[item][0]
    assert set(recs._cache) == {(RUN_ID, "user", 0), (RUN_ID, "item", 0)}


def test_many_threads_share_a_bounded_cache(run: Similar) -> None:
    """Users' and items' lookups from 8 threads through a cache of 2 shards: every answer right,
    each shard of either kind loaded under its own key, the cache never over its bound."""
    recs = Recommendations.open(run.root, cached_shards=2)
    items, users = sorted(run.lists), sorted(run.published.expected)
    wrong: list[str] = []
    errors: list[BaseException] = []

    def read(offset: int) -> None:
        try:
            for _ in range(5):
                for item in items[offset::3]:
                    if recs.similar_to(item).items != run.lists[item][0]:
                        wrong.append(item)
                for user in users[offset::3]:
                    if recs.for_user(user).items != run.published.expected[user][0]:
                        wrong.append(user)
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=read, args=(k % 3,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and wrong == []
    assert len(recs._cache) <= 2


# any text but lone surrogates, which no published id holds (UTF-8 cannot encode them)
ids = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6)


@given(
    known=st.lists(ids, min_size=1, max_size=40, unique=True), shards=st.integers(1, 6), probes=st.lists(ids)
)
def test_the_item_shard_lookup_is_a_search_by_utf8_bytes(
    known: list[str], shards: int, probes: list[str]
) -> None:
    """For any ids, the binary search finds the one item shard whose range holds an id in UTF-8
    byte order (which differs from str order past U+FFFF), and none for an id outside them all."""
    ordered = sorted(known, key=lambda i: i.encode())
    bounds = np.linspace(0, len(ordered), min(shards, len(ordered)) + 1).round().astype(int).tolist()
    ranges = [
        {"index": k, "first_item": ordered[start], "last_item": ordered[end - 1]}
        for k, (start, end) in enumerate(itertools.pairwise(bounds))
    ]
    index = _ShardIndex.build(ITEMS, ranges[::-1])  # the manifest's order does not matter
    for probe in [*known, *probes]:
        holding = [r for r in ranges if r["first_item"].encode() <= probe.encode() <= r["last_item"].encode()]
        assert index.shard_for(probe) == (holding[0] if holding else None)


# --- the command line: recommender similar ITEM --------------------------------------------------


def test_the_cli_prints_an_items_similar_items(run: Similar, capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    item = _with_list(run)
    items, scores = run.lists[item]
    assert main(["similar", item, "--from", str(run.root), "-n", "3", "--exclude", items[1]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"item {item} (similar items by {run.section['measure']}, run {RUN_ID}):"
    kept = [(i, s) for i, s in zip(items, scores) if i != items[1]][:3]
    assert out[1:] == [f"  {rank:3d}. {i}  {s:.3f}" for rank, (i, s) in enumerate(kept, start=1)]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("not an item", "unknown item: the run does not know it"),
        (RARE, "no list: fewer ratings than 2 or no item of positive similarity"),
    ],
)
def test_the_cli_says_why_an_answer_is_empty(
    run: Similar, item: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recommender.cli import main

    assert main(["similar", item, "--from", str(run.root)]) == 0  # as `recommend` for a fallback user
    assert capsys.readouterr().out == f"item {item} ({says}, run {RUN_ID})\n"


def test_the_cli_on_a_run_without_similar_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    _publish(tmp_path)
    assert main(["similar", "item 1", "--from", str(tmp_path)]) == 0
    expected = "item item 1 (no similar items: the run was published before they were, run run-1)\n"
    assert capsys.readouterr().out == expected


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "all"])
def test_the_cli_refuses_a_bad_n(run: Similar, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["similar", "item 01", "--from", str(run.root), "-n", value])
    assert stopped.value.code == 2
    assert "argument -n: n must be a whole number >= 1" in capsys.readouterr().err


def test_the_cli_without_published_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    assert main(["similar", "item 1", "--from", str(tmp_path)]) == 2
    assert "no latest.json" in capsys.readouterr().err
