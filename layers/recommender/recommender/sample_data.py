"""Ratings to try the product on: a synthetic dataset with real structure, or a MovieLens folder,
loaded into a PostgreSQL table with COPY.

The synthetic data has what makes collaborative filtering work and what makes it hard: latent
tastes (users like items whose factors match theirs, and choose to rate items they expect to like),
long-tail popularity (a few items get most ratings, most items few), skewed activity (log-normal:
a few users rate a lot), and per-user and per-item biases. Ratings are integer stars, 1 to 5.

It is generated in blocks of users as numpy arrays (`synthetic_blocks`), so memory is bounded by
the block whatever the total: MovieLens 25M's shape (162,000 users, 59,000 items, 25 million
ratings) is generated and loaded into PostgreSQL in about a minute (`load_synthetic`, the
`recommender load` command). `synthetic_ratings` iterates over the same data row by row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from psycopg2 import sql

from .config import SourceTable
from .errors import ConfigError, DatasetError

Row = tuple[str, str, float, float]  # user id, item id, rating, seconds since the epoch
COPY_BATCH_ROWS = 100_000  # rows per CSV chunk of `load_ratings`
COPY_READ_BYTES = 1 << 20  # bytes psycopg2 asks the reader for at a time
START_EPOCH = 1_700_000_000  # November 2023
YEAR_SECONDS = 365 * 86400

RNG_CHUNK_USERS = 1024  # users per random stream: part of the data's definition, see _Model
DEFAULT_BLOCK_USERS = RNG_CHUNK_USERS  # about 160,000 ratings at MovieLens 25M's density
POPULARITY_EXPONENT = 0.9  # Zipf-like: the item of popularity rank r has weight r^-0.9
SELECTION_STRENGTH = 1.5  # how much a user's choice of items follows the affinity
AFFINITY_CAP_SIGMAS = 2.5  # affinities above this many standard deviations attract no more
ACTIVITY_SIGMA = 0.8  # log-normal spread of the number of ratings per user
MIN_RATINGS_PER_USER = 5
NOISE_SIGMA = 0.6
GUIDE_STEPS = 3  # steps forward from the guide table before a group draw falls back to a binary search
EXACT_BELOW_ACCEPTANCE = 0.02  # a user keeping fewer candidates than this gets the exact draw

# The structure under which ranking models compare as on MovieLens (docs/scaling.md, "Calibration":
# at ml-latest-small's shape, popularity < item-kNN < ALS < EASE, each ratio to popularity within
# 25% of ml-latest-small's): 350 groups of items, concentrated tastes over them, and ratings timed
# in random order. The demo and `recommender load --synthetic` use it; the fields' defaults keep
# the data the generator made before it had these fields.
CALIBRATED: Mapping[str, Any] = MappingProxyType(
    {"topics": 350, "topic_concentration": 0.1, "time_shuffle": 1.0}
)


def calibrated(items: int) -> dict[str, Any]:
    """CALIBRATED's fields for a catalogue of `items`: as many groups as items below 350."""
    return {**CALIBRATED, "topics": min(int(CALIBRATED["topics"]), items)}


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2000
    items: int = 1000
    ratings_per_user: int = 40  # mean; activity is log-normal around it, at least 5
    factors: int = 8
    seed: int = 0
    total_ratings: int | None = None  # when set: the exact number of ratings (counts rescaled)
    # the data's structure (docs/scaling.md, "Calibration", says what each does to ranking models)
    popularity_exponent: float = POPULARITY_EXPONENT
    selection_strength: float = SELECTION_STRENGTH
    activity_sigma: float = ACTIVITY_SIGMA
    topics: int = 0  # groups of items (genres); 0: none
    topic_concentration: float = 1.0  # Dirichlet parameter of a user's taste over the groups
    time_shuffle: float = 0.0  # 0: a user rates in order of choice (likeliest first); 1: in random order

    def __post_init__(self) -> None:
        if self.users < 0 or self.items < 1 or self.ratings_per_user < 1 or self.factors < 1:
            raise ConfigError(f"invalid synthetic spec {self}: need users >= 0 and positive the rest")
        if self.popularity_exponent < 0 or self.selection_strength < 0 or self.activity_sigma < 0:
            raise ConfigError(f"invalid synthetic spec {self}: need non-negative exponent, strength, sigma")
        if not 0 <= self.topics <= self.items or self.topic_concentration <= 0:
            raise ConfigError(f"invalid synthetic spec {self}: need 0 <= topics <= items, concentration > 0")
        if not 0 <= self.time_shuffle <= 1:
            raise ConfigError(f"invalid synthetic spec {self}: need 0 <= time_shuffle <= 1")
        if self.total_ratings is not None:
            low, high = _count_bounds(self.items)
            if not self.users * low <= self.total_ratings <= self.users * high:
                raise ConfigError(
                    f"{self.total_ratings:,} ratings cannot be spread over {self.users:,} users:"
                    f" each user rates between {low} and {high} of the {self.items:,} items"
                )

    @classmethod
    def with_total(
        cls, users: int, items: int, ratings: int, factors: int = 8, seed: int = 0, **structure: Any
    ) -> SyntheticSpec:
        """A spec with exactly `ratings` ratings, e.g. MovieLens 25M's shape:
        `SyntheticSpec.with_total(162_000, 59_000, 25_000_000)`. `structure`: the fields after
        `total_ratings`."""
        per_user = max(1, round(ratings / users)) if users else 1
        return cls(users, items, per_user, factors, seed, total_ratings=ratings, **structure)


@dataclass(frozen=True)
class _GroupTables:
    guide: np.ndarray  # (users x groups,) int64: where the inversion of a uniform draw starts
    shares: np.ndarray  # (users x groups,) float64: each user's cumulative share of draws per group
    shifted: np.ndarray  # shares + the user's index in the chunk: increasing over the chunk


@dataclass(frozen=True)
class RatingBlock:
    """Ratings of consecutive users, grouped by user: 0-based user and item indices (user `u` is id
    `str(u + 1)`, item `i` is `item_id(i, items)`), ratings and seconds since the epoch."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64
    ratings: np.ndarray  # float64
    timestamps: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def cut(self, start: int, stop: int) -> RatingBlock:
        return RatingBlock(
            self.users[start:stop],
            self.items[start:stop],
            self.ratings[start:stop],
            self.timestamps[start:stop],
        )

    @staticmethod
    def concat(blocks: list[RatingBlock]) -> RatingBlock:
        if len(blocks) == 1:
            return blocks[0]
        return RatingBlock(
            *(
                np.concatenate([getattr(b, name) for b in blocks])
                for name in ("users", "items", "ratings", "timestamps")
            )
        )


def item_id_width(items: int) -> int:
    """Digits of the item ids: five as always ("item-00001"), more only from 100,000 items."""
    return max(5, len(str(items)))


def item_id(index: int, items: int) -> str:
    return f"item-{index + 1:0{item_id_width(items)}d}"


def _count_bounds(items: int) -> tuple[int, int]:
    low = min(MIN_RATINGS_PER_USER, items)
    return low, min(items, max(MIN_RATINGS_PER_USER, items // 2))


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: afterwards `j` uniform, kept with probability prob[j] else alias[j],
    is an exact draw proportional to `weights`, at O(1) per draw."""
    n = len(weights)
    scaled = (weights * (n / weights.sum())).tolist()
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] += scaled[s] - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias  # leftovers (rounding) keep prob 1


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in np.ravel(x).tolist()])


def _scaled_counts(activity: np.ndarray, low: int, high: int, total: int) -> np.ndarray:
    """Integer counts in [low, high] summing to `total` exactly, proportional to `activity` where
    the bounds allow: the scale is found by bisection, then the fractions are rounded by largest
    remainder."""
    f_low, f_high = 0.0, high / float(activity.min())
    for _ in range(200):
        middle = (f_low + f_high) / 2
        if np.clip(activity * middle, low, high).sum() <= total:
            f_low = middle
        else:
            f_high = middle
    x = np.clip(activity * f_low, low, high)
    counts = np.floor(x).astype(np.int64)
    residual = total - int(counts.sum())
    room = np.flatnonzero(counts < high)
    if not 0 <= residual <= len(room):
        raise RuntimeError(f"cannot round the counts to {total}: {residual} left over")
    order = room[np.argsort(counts[room] - x[room], kind="stable")]  # largest fraction first
    counts[order[:residual]] += 1
    return counts


def _order(major: np.ndarray, minor: np.ndarray, minor_bound: int) -> np.ndarray:
    """The permutation sorting distinct (major, minor) pairs, minor < minor_bound: one quicksort
    of a combined int64 key when it fits (several times faster than a stable sort), else lexsort."""
    if not len(major):
        return np.zeros(0, dtype=np.int64)
    if (int(major.max()) + 1) * minor_bound < 2**63:
        return np.argsort(major * minor_bound + minor)
    return np.lexsort((minor, major))


def _rank_in_groups(grouped: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of `grouped`."""
    starts = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]]))
    sizes = np.diff(np.append(starts, len(grouped)))
    return np.arange(len(grouped)) - np.repeat(starts, sizes)


class _Model:
    """The synthetic data's parameters, drawn once (O(users + items) memory), and the ratings of
    any chunk of `RNG_CHUNK_USERS` users, drawn from that chunk's own random stream.

    Each chunk's stream is `SeedSequence(seed, spawn_key=(1, chunk))`, so a chunk's ratings depend
    on the seed and the chunk alone: the data is the same whatever the block size, and a block
    holds a few chunks at most.

    Which items a user rates: draws proportional to popularity x min(1, exp(1.5 (a - c))), without
    replacement, where a is the user-item affinity and c the user's cap (below). Drawing the plain
    target, `rng.choice(items, p=popularity * exp(1.5 a))` per user, needs the affinity of every
    item for every user, 9.6e9 of them at MovieLens 25M's shape; so would a Gumbel-top-k over the
    catalogue (plus as many Gumbel draws and a partition per user). Instead, candidates are drawn from the
    popularity alone (an alias table, O(1) each) and each is kept with probability
    min(1, exp(1.5 (a - c))): rejection sampling, exact for that target, at the cost of a few
    candidates per rating, each a gather of two factor rows.

    Why cap at c rather than take the plain target as it is: rejection needs a bound on the weights,
    and the user's maximum affinity is a pass over every item again; with it, 1 candidate in 7 is
    kept. c is the mean affinity of the items the plain target picks plus 2.5 standard deviations
    (for a normal affinity, exp(1.5 a) shifts the mean by 1.5 variances): it changes the target
    only for the 0.6% of picks above it, among the user's most loved items anyway, and 1 candidate
    in 4 is kept (measured at 162,000 x 59,000).

    Drawing with replacement and keeping each item's first acceptance is exactly sampling without
    replacement in that order (successive sampling, as `rng.choice(replace=False, p=...)` does),
    so a user's first `count` distinct accepted items are the sample, and a user's rows stay in
    that order. When a user keeps under 2% of its candidates (many ratings in a small catalogue,
    or a strong taste), rejection would need hundreds of draws per rating; the rest of that user's
    sample is then drawn exactly over the whole catalogue (`_exact`), from the same target.
    """

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,)))
        k = spec.factors
        popularity = 1.0 / np.arange(1, spec.items + 1) ** spec.popularity_exponent
        rng.shuffle(popularity)  # popular items are spread over the id range
        self.user_f = rng.normal(0, 1, (spec.users, k)) / np.sqrt(k)
        self.item_f = rng.normal(0, 1, (spec.items, k)) / np.sqrt(k)
        self.user_bias = rng.normal(0, 0.4, spec.users)
        item_bias = rng.normal(0, 0.5, spec.items) + 0.4 * np.log(popularity / popularity.mean())
        self.item_bias = item_bias - item_bias.mean()
        sigma = spec.activity_sigma
        activity = rng.lognormal(np.log(spec.ratings_per_user) - sigma**2 / 2, sigma, spec.users)
        low, high = _count_bounds(spec.items)
        if spec.total_ratings is None:
            self.counts = np.clip(np.rint(activity), low, high).astype(np.int64)
        elif spec.users:
            self.counts = _scaled_counts(activity, low, high, spec.total_ratings)
        else:
            self.counts = np.zeros(0, dtype=np.int64)
        self.popularity = popularity
        self.item_f32 = self.item_f.astype(np.float32)
        self.prob, self.alias = _alias_table(popularity)
        # the affinity over items drawn by popularity: mean u.m and variance u' S u, per user
        weights = popularity / popularity.sum()
        mean = weights @ self.item_f
        centred = self.item_f - mean
        covariance = (centred * weights[:, None]).T @ centred
        self.mean_affinity = self.user_f @ mean
        spread = np.sqrt(np.einsum("uk,kl,ul->u", self.user_f, covariance, self.user_f))
        # the cap: 2.5 standard deviations above the mean affinity of the items the target picks
        # (for a normal affinity, exp(1.5 a) tilts its mean up by 1.5 variances)
        self.cap = self.mean_affinity + spec.selection_strength * spread**2 + AFFINITY_CAP_SIGMAS * spread
        # expected share of candidates kept, for a normal affinity: sizes the first round's draws
        bs = spec.selection_strength * spread
        self.acceptance = np.clip(
            _normal_cdf(-(bs + AFFINITY_CAP_SIGMAS))
            + np.exp(-(bs**2) / 2 - AFFINITY_CAP_SIGMAS * bs)
            * _normal_cdf(np.full(1, AFFINITY_CAP_SIGMAS))[0],
            0.01,
            1.0,
        )
        if spec.topics:  # drawn last: the rest of the model is the same with or without groups
            self._init_topics(rng)

    def _init_topics(self, rng: np.random.Generator) -> None:
        """Groups of items of equal size (a random permutation dealt round), and an alias table of
        popularity within each group: a candidate is a group, then an item of it, O(1) each."""
        spec = self.spec
        self.topic = (rng.permutation(spec.items) % spec.topics).astype(np.int64)
        self.by_topic = np.argsort(self.topic, kind="stable")  # items, grouped
        sizes = np.bincount(self.topic, minlength=spec.topics)
        self.topic_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.topic_size = sizes
        self.topic_mass = np.bincount(self.topic, weights=self.popularity, minlength=spec.topics)
        self.topic_prob = np.ones(spec.items)
        self.topic_alias = np.arange(spec.items, dtype=np.int64)  # positions in by_topic
        for t in range(spec.topics):
            start, stop = int(self.topic_start[t]), int(self.topic_start[t] + sizes[t])
            prob, alias = _alias_table(self.popularity[self.by_topic[start:stop]])
            self.topic_prob[start:stop], self.topic_alias[start:stop] = prob, alias + start

    def tastes(self, index: int) -> np.ndarray:
        """The topic tastes of chunk `index`'s users, (users, topics), each row summing to 1: a
        Dirichlet draw from the chunk's own stream `SeedSequence(seed, spawn_key=(2, chunk))`."""
        spec = self.spec
        first = index * RNG_CHUNK_USERS
        n = min(spec.users, first + RNG_CHUNK_USERS) - first
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2, index)))
        taste: np.ndarray = rng.dirichlet(np.full(spec.topics, spec.topic_concentration), n)
        return taste

    def _candidates(
        self, rng: np.random.Generator, local_u: np.ndarray, groups: _GroupTables | None
    ) -> np.ndarray:
        """One candidate item per entry of `local_u`: by popularity alone (the alias table), or
        with groups by the user's taste x popularity."""
        if groups is not None:
            return self._topic_candidates(rng, local_u, groups)
        j = rng.integers(0, self.spec.items, len(local_u))
        picked: np.ndarray = np.where(rng.random(len(local_u)) < self.prob[j], j, self.alias[j])
        return picked

    def _group_tables(self, taste: np.ndarray) -> _GroupTables:
        """What `_topic_candidates` inverts, made once per chunk: every user's cumulative share
        of taste x popularity over the groups (also shifted by the user's index, which makes the
        chunk's shares one increasing array), and a guide table (for each user and each m, the
        group before the first whose cumulative share passes m / groups)."""
        topics = self.spec.topics
        cumulative = np.cumsum(taste * self.topic_mass, axis=1)
        shares = cumulative / cumulative[:, -1:]  # the last is exactly 1
        n_users = len(taste)
        shifted = (np.arange(n_users)[:, None] + shares).ravel()  # increasing: one sorted search
        marks = (np.arange(n_users)[:, None] + np.arange(topics) / topics).ravel()
        found = np.searchsorted(shifted, marks, side="right") - np.repeat(np.arange(n_users), topics) * topics
        guide = np.maximum(found - 1, 0)  # one back: a start never past the group, whatever the rounding
        return _GroupTables(guide, shares.ravel(), shifted)

    def _topic_candidates(
        self, rng: np.random.Generator, local_u: np.ndarray, groups: _GroupTables
    ) -> np.ndarray:
        """One candidate item per entry of `local_u`, drawn from taste[u, group] x popularity: the
        group by inverting the user's cumulative group weights, the item by the group's alias table.
        The inversion starts from the guide table and steps forward, about two looks per draw: a
        binary search over all the chunk's groups for every draw took most of the generator's time.
        The few draws still short after `GUIDE_STEPS` steps (a concentrated taste leaves runs of
        nearly empty groups to step through) get that binary search."""
        topics = self.spec.topics
        row = local_u * topics
        x = rng.random(len(local_u))
        group = groups.guide[row + (x * topics).astype(np.int64)]
        flat = groups.shares
        behind = np.flatnonzero(flat[row + group] <= x)
        for _ in range(GUIDE_STEPS):
            if not len(behind):
                break
            group[behind] += 1
            behind = behind[flat[row[behind] + group[behind]] <= x[behind]]
        else:
            found = np.searchsorted(groups.shifted, local_u[behind] + x[behind], side="right")
            # within the user's groups and never back, whatever the rounding of index + x
            group[behind] = np.clip(found - row[behind], group[behind], topics - 1)
        # one uniform for the place in the group (its whole part) and the alias coin (its fraction)
        spot = rng.random(len(local_u)) * self.topic_size[group]
        place = spot.astype(np.int64)
        j = self.topic_start[group] + place
        position = np.where(spot - place < self.topic_prob[j], j, self.topic_alias[j])
        picked: np.ndarray = self.by_topic[position]
        return picked

    def _exact(
        self,
        rng: np.random.Generator,
        user: int,
        rated: np.ndarray,
        size: int,
        taste: np.ndarray | None = None,
    ) -> np.ndarray:
        """`size` more items for `user`, none of `rated`, from the same target by successive
        sampling over the whole catalogue: O(items), for the rare users rejection serves badly
        (many ratings in a small catalogue, or a strong taste). `taste`: the user's group weights."""
        affinity = self.item_f @ self.user_f[user]
        strength = self.spec.selection_strength
        weights = self.popularity * np.exp(strength * np.minimum(affinity - self.cap[user], 0.0))
        if taste is not None:
            weights *= taste[self.topic]
        weights[rated] = 0.0
        picked: np.ndarray = rng.choice(self.spec.items, size=size, replace=False, p=weights / weights.sum())
        return picked.astype(np.int64)

    @property
    def chunks(self) -> int:
        return -(-self.spec.users // RNG_CHUNK_USERS)

    def chunk(self, index: int) -> RatingBlock:
        spec = self.spec
        first = index * RNG_CHUNK_USERS
        last = min(spec.users, first + RNG_CHUNK_USERS)
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, index)))
        counts = self.counts[first:last]
        user_f32, cap32 = self.user_f[first:last].astype(np.float32), self.cap[first:last].astype(np.float32)
        rate = self.acceptance[first:last].copy()
        taste = self.tastes(index) if spec.topics else None
        groups = None if taste is None else self._group_tables(taste)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        chosen_u = np.repeat(np.arange(last - first), counts)  # local user of each final row
        chosen_i = np.zeros(int(offsets[-1]), dtype=np.int64)
        # rows of users still short, grouped by user in order of acceptance: local user, item, and
        # the draw's sequence number (increasing over rounds)
        open_u = open_i = open_s = np.zeros(0, dtype=np.int64)
        have = np.zeros(last - first, dtype=np.int64)
        drawn_so_far = 0
        for _ in range(1000):
            active = np.flatnonzero(have < counts)
            if not len(active):
                break
            need = counts[active] - have[active]
            exact = rate[active] < EXACT_BELOW_ACCEPTANCE
            drawn = np.where(exact, 0, np.ceil(need / rate[active] * 1.2).astype(np.int64) + 2)
            cand_u = np.repeat(active, drawn)
            cand_i = self._candidates(rng, cand_u, groups)
            # screening in float32: the factor rows gathered at random stay in cache
            affinity = np.einsum(
                "nk,nk->n", np.repeat(user_f32[active], drawn, axis=0), np.take(self.item_f32, cand_i, axis=0)
            )
            chance = np.exp(
                np.float32(spec.selection_strength) * np.minimum(affinity - cap32[cand_u], np.float32(0))
            )
            keep = np.flatnonzero(rng.random(len(cand_u), dtype=np.float32) < chance)
            parts_u, parts_i, parts_s = (
                [open_u, cand_u[keep]],
                [open_i, cand_i[keep]],
                [open_s, drawn_so_far + keep],
            )
            drawn_so_far += len(cand_u)
            for user in active[exact].tolist():  # too few candidates kept: draw the rest exactly
                rated = chosen_i[offsets[user] : offsets[user] + have[user]]
                picked = self._exact(
                    rng,
                    first + user,
                    rated,
                    int(counts[user] - have[user]),
                    None if taste is None else taste[user],
                )
                parts_u.append(np.full(len(picked), user))
                parts_i.append(picked)
                parts_s.append(drawn_so_far + np.arange(len(picked)))
                drawn_so_far += len(picked)
            all_u, all_i, all_s = np.concatenate(parts_u), np.concatenate(parts_i), np.concatenate(parts_s)
            if len(open_u) or exact.any():  # the open rows and the new ones, merged per user
                order = _order(all_u, all_s, drawn_so_far)
                all_u, all_i, all_s = all_u[order], all_i[order], all_s[order]
            unique = _first_acceptances(all_u * spec.items + all_i, all_s, drawn_so_far)
            all_u, all_i, all_s = all_u[unique], all_i[unique], all_s[unique]
            rank = _rank_in_groups(all_u)
            within = rank < counts[all_u]
            all_u, all_i, all_s, rank = all_u[within], all_i[within], all_s[within], rank[within]
            chosen_i[offsets[all_u] + rank] = all_i
            have[active] = np.bincount(all_u, minlength=len(have))[active]
            # the share of draws that brought a new item, this round's draws pooled with 20
            # pseudo-draws at the previous estimate (one empty round of a few draws is no evidence)
            gained = have[active] - (counts[active] - need)
            rate[active] = np.where(drawn > 0, (gained + 20 * rate[active]) / (drawn + 20), 1.0)
            short = have[all_u] < counts[all_u]
            open_u, open_i, open_s = all_u[short], all_i[short], all_s[short]
        else:  # pragma: no cover - the exact draw completes any user; this is a guard, not a path
            raise RuntimeError("synthetic generator: a chunk did not fill its users' ratings")
        return self._rate(rng, first, chosen_u, chosen_i)

    def _rate(
        self, rng: np.random.Generator, first: int, chosen_u: np.ndarray, chosen_i: np.ndarray
    ) -> RatingBlock:
        """Stars and times for the chosen (local user, item) pairs of the chunk starting at `first`."""
        users = chosen_u + first
        chosen_a = np.einsum(
            "nk,nk->n", np.take(self.user_f, users, axis=0), np.take(self.item_f, chosen_i, axis=0)
        )
        n = len(chosen_u)
        raw = (
            3.0
            + self.user_bias[users]
            + self.item_bias[chosen_i]
            + 1.2 * chosen_a
            + rng.normal(0, NOISE_SIGMA, n)
        )
        stars = np.clip(np.rint(raw), 1, 5)
        # times over a year, in increasing order within each user (who rates popular items first)
        within_year = (
            np.sort(chosen_u * YEAR_SECONDS + rng.uniform(0, YEAR_SECONDS, n)) - chosen_u * YEAR_SECONDS
        )
        if self.spec.time_shuffle:
            within_year = within_year[self._time_order(rng, chosen_u)]
        stamps = START_EPOCH + np.rint(within_year).astype(np.int64)
        return RatingBlock(users.astype(np.int64), chosen_i, stars, stamps)

    def _time_order(self, rng: np.random.Generator, chosen_u: np.ndarray) -> np.ndarray:
        """Which of a user's increasing times each of its rows (in order of choice) gets: rows sorted
        by (1 - s) x place in the order of choice + s x uniform, s = `time_shuffle`. At 0 the
        latest ratings are the user's least likely picks, which no real service shows (people do
        not rate their favourites first); at 1 the order is random."""
        s = self.spec.time_shuffle
        place = _rank_in_groups(chosen_u) / np.maximum(np.bincount(chosen_u)[chosen_u], 1)
        key = (1.0 - s) * place + s * rng.random(len(chosen_u))  # in [0, 1]
        order = np.argsort(chosen_u + key / 2)  # rows in time order, per user (distinct keys: one quicksort)
        slots = np.empty(len(order), dtype=np.int64)
        slots[order] = np.arange(len(order))
        return slots


def _first_acceptances(pair: np.ndarray, sequence: np.ndarray, drawn: int) -> np.ndarray:
    """A mask of each (user, item) pair's first acceptance: sort by (pair, sequence) (distinct keys,
    so the fast unstable sort is deterministic) and keep the head of each pair's run."""
    order = _order(pair, sequence, drawn)
    sorted_pair = pair[order]
    unique = np.ones(len(pair), dtype=bool)
    unique[order[1:][sorted_pair[1:] == sorted_pair[:-1]]] = False
    return unique


def synthetic_blocks(spec: SyntheticSpec, block_users: int = DEFAULT_BLOCK_USERS) -> Iterator[RatingBlock]:
    """The synthetic ratings in blocks of `block_users` consecutive users (the last may be
    smaller); concatenated, the blocks are the same whatever `block_users`. Memory is bounded by
    the block (plus one chunk of 1,024 users), not by the total."""
    if block_users < 1:
        raise ValueError(f"block_users must be at least 1, not {block_users}")
    model = _Model(spec)
    pending: list[RatingBlock] = []
    start = 0  # first user of the next block
    for index in range(model.chunks):
        pending.append(model.chunk(index))
        covered = min(spec.users, (index + 1) * RNG_CHUNK_USERS)
        while start < covered and (covered - start >= block_users or covered == spec.users):
            stop = min(start + block_users, covered)
            joined = RatingBlock.concat(pending)
            cut = int(np.searchsorted(joined.users, stop))
            yield joined.cut(0, cut)
            pending = [joined.cut(cut, len(joined))]
            start = stop


def synthetic_ratings(spec: SyntheticSpec) -> Iterator[Row]:
    """The synthetic ratings row by row (user id, item id, stars, seconds since the epoch)."""
    width = item_id_width(spec.items)
    names = [f"item-{i:0{width}d}" for i in range(1, spec.items + 1)]
    for block in synthetic_blocks(spec):
        for user, item, star, stamp in zip(
            (block.users + 1).tolist(),
            block.items.tolist(),
            block.ratings.tolist(),
            block.timestamps.tolist(),
        ):
            yield str(user), names[item], star, float(stamp)


def read_movielens(path: Path) -> Iterator[Row]:
    """Rows of a MovieLens folder: `ratings.csv` (ml-latest*, ml-25m) or `u.data` (ml-100k).

    A folder that is not one is a ConfigError (the command's option is wrong), a file that does
    not read as MovieLens a DatasetError naming its line."""
    path = Path(path)
    if (path / "ratings.csv").is_file():
        with open(path / "ratings.csv", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            if header[:4] != ["userId", "movieId", "rating", "timestamp"]:
                raise DatasetError(f"{path / 'ratings.csv'}: unexpected header {header}")
            yield from _movielens_rows(reader, path / "ratings.csv", first_line=2)
    elif (path / "u.data").is_file():
        with open(path / "u.data", encoding="latin-1") as handle:
            yield from _movielens_rows((line.split("\t") for line in handle), path / "u.data", first_line=1)
    else:
        raise ConfigError(f"{path} holds neither ratings.csv nor u.data (a MovieLens folder)")


def _movielens_rows(fields: Iterable[list[str]], where: Path, first_line: int) -> Iterator[Row]:
    for number, row in enumerate(fields, start=first_line):
        try:
            user, item, rating, stamp = row
            parsed = user, item, float(rating), float(stamp)
        except ValueError as error:
            raise DatasetError(
                f"{where}, line {number}: not a user, item, rating and timestamp ({error})"
            ) from None
        yield parsed


# --- CSV text with numpy ------------------------------------------------------------------------
#
# A block becomes one uint8 matrix, a row per rating: each field is a fixed-width byte string
# padded with NUL bytes (ids from lookup tables, timestamps from a table of days and a table of
# the 86,400 times of day), separators in between; dropping every NUL byte leaves the CSV text.
# No Python object per row, no datetime per row.

_TIME_OF_DAY: np.ndarray | None = None


def _time_of_day_table() -> np.ndarray:
    """'HH:MM:SS' of every second of a day, as a (86400, 8) uint8 matrix."""
    global _TIME_OF_DAY
    if _TIME_OF_DAY is None:
        seconds = np.arange(86400)
        digits = np.stack(
            [
                seconds // 36000,
                seconds // 3600 % 10,
                seconds // 600 % 6,
                seconds // 60 % 10,
                seconds // 10 % 6,
                seconds % 10,
            ]
        ).T.astype(np.uint8) + ord("0")
        table = np.full((86400, 8), ord(":"), dtype=np.uint8)
        table[:, [0, 1, 3, 4, 6, 7]] = digits
        _TIME_OF_DAY = table
    return _TIME_OF_DAY


def _bytes_matrix(strings: np.ndarray) -> np.ndarray:
    """A 1-d array of `S<w>` byte strings as an (n, w) uint8 matrix, NUL-padded."""
    width = strings.dtype.itemsize
    return np.ascontiguousarray(strings).view(np.uint8).reshape(len(strings), width)


def timestamp_text(seconds: np.ndarray) -> np.ndarray:
    """Whole seconds since the epoch as 'YYYY-MM-DD HH:MM:SS+00' (an (n, w) uint8 matrix, NUL
    padded), what PostgreSQL reads as a UTC timestamptz."""
    seconds = np.asarray(seconds, dtype=np.int64)
    days, within = np.divmod(seconds, 86400)
    if len(days) and int(days.max()) - int(days.min()) <= 1_000_000:
        first = int(days.min())
        span = np.arange(first, int(days.max()) + 1).astype("datetime64[D]")
        index = days - first
    else:
        uniques, index = np.unique(days, return_inverse=True)
        span = uniques.astype("datetime64[D]")
    dates = _bytes_matrix(np.datetime_as_string(span).astype("S"))[index]
    out = np.zeros((len(seconds), dates.shape[1] + 12), dtype=np.uint8)
    out[:, : dates.shape[1]] = dates
    out[:, -12] = ord(" ")
    out[:, -11:-3] = _time_of_day_table()[within]
    out[:, -3:] = np.frombuffer(b"+00", dtype=np.uint8)
    return out


def _number_text(values: np.ndarray) -> np.ndarray:
    """Floats as Python prints them, through a table of the distinct values (ratings have few)."""
    uniques, index = np.unique(values, return_inverse=True)
    table = np.array([repr(float(v)).encode() for v in uniques.tolist()], dtype="S")
    return _bytes_matrix(table)[index.reshape(-1)]


def csv_matrix(columns: list[np.ndarray]) -> bytes:
    """CSV text of fields given as (n, w_k) uint8 matrices (NUL-padded): ',' between, '\\n' after."""
    n = columns[0].shape[0]
    width = sum(c.shape[1] for c in columns) + len(columns)
    out = np.zeros((n, width), dtype=np.uint8)
    at = 0
    for column in columns:
        out[:, at : at + column.shape[1]] = column
        at += column.shape[1]
        out[:, at] = ord(",")
        at += 1
    out[:, -1] = ord("\n")
    flat = out.reshape(-1)
    text: bytes = flat[flat != 0].tobytes()
    return text


class SyntheticCsv:
    """CSV text of synthetic blocks (ids as `synthetic_ratings` writes them), with id tables made
    once."""

    def __init__(self, spec: SyntheticSpec, timestamps: bool = True) -> None:
        width = item_id_width(spec.items)
        self.user_ids = _bytes_matrix(np.arange(1, spec.users + 1).astype("S"))
        items = np.char.add(b"item-", np.char.zfill(np.arange(1, spec.items + 1).astype("S"), width))
        self.item_ids = _bytes_matrix(items)
        self.timestamps = timestamps

    def __call__(self, block: RatingBlock) -> bytes:
        if not len(block):
            return b""
        columns = [self.user_ids[block.users], self.item_ids[block.items], _number_text(block.ratings)]
        if self.timestamps:
            columns.append(timestamp_text(block.timestamps))
        return csv_matrix(columns)


# --- loading into PostgreSQL --------------------------------------------------------------------


class ChunkReader:
    """A read-only file over an iterator of byte strings, what `copy_expert` reads COPY data
    from: one chunk is produced at a time, so the whole table is never in memory."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._current):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current, self._offset = memoryview(chunk), 0
        end = len(self._current) if size is None or size < 0 else self._offset + size
        piece = bytes(self._current[self._offset : end])
        self._offset += len(piece)
        return piece

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - copy_expert only reads
        raise io.UnsupportedOperation("readline")


def ratings_table(source: SourceTable) -> sql.Composable:
    return (
        sql.SQL("{}.{}").format(sql.Identifier(source.schema), sql.Identifier(source.table))
        if source.schema
        else sql.Identifier(source.table)
    )


def create_ratings_table(cursor: Any, source: SourceTable) -> None:
    """Drop and create the source table. Columns: user and item as text, rating as real,
    timestamp (when the mapping names one) as timestamptz, which is what an application's ratings
    table typically looks like. A normal (logged) table, with no index."""
    table = ratings_table(source)
    columns = [
        sql.SQL("{} text NOT NULL").format(sql.Identifier(source.user_column)),
        sql.SQL("{} text NOT NULL").format(sql.Identifier(source.item_column)),
        sql.SQL("{} real NOT NULL").format(sql.Identifier(source.rating_column)),
    ]
    if source.timestamp_column:
        columns.append(sql.SQL("{} timestamptz").format(sql.Identifier(source.timestamp_column)))
    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)))


def copy_csv(conn: Any, source: SourceTable, chunks: Iterable[bytes]) -> None:
    """(Re)create the source table and stream CSV chunks into it with one COPY, in one transaction.

    The table is created in the same transaction as the COPY, so the COPY is FREEZE: rows are
    written already frozen and marked all-visible, and the first reader does not rewrite every
    page to set hint bits. Commit is asynchronous (synchronous_commit off, this transaction only):
    a crash in the next instant could lose the load, never corrupt it.
    """
    table = ratings_table(source)
    freeze = sql.SQL(", FREEZE") if not conn.autocommit else sql.SQL("")
    ids = sql.SQL(", ").join(sql.Identifier(c) for c in (source.user_column, source.item_column))
    # FORCE_NOT_NULL: an empty id is the empty string (unquoted empty CSV fields are NULL otherwise)
    copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({}){})").format(table, ids, freeze)
    with conn.cursor() as cursor:
        if not conn.autocommit:
            cursor.execute("SET LOCAL synchronous_commit = off")
        create_ratings_table(cursor, source)
        cursor.copy_expert(copy, ChunkReader(chunks), size=COPY_READ_BYTES)
    conn.commit()


def load_synthetic(
    conn: Any, spec: SyntheticSpec, source: SourceTable, block_users: int = DEFAULT_BLOCK_USERS
) -> int:
    """(Re)create the source table and fill it with the synthetic ratings; returns the row count.
    Generation, formatting and COPY stream block by block."""
    to_csv = SyntheticCsv(spec, timestamps=bool(source.timestamp_column))
    total = 0

    def chunks() -> Iterator[bytes]:
        nonlocal total
        for block in synthetic_blocks(spec, block_users):
            total += len(block)
            yield to_csv(block)

    copy_csv(conn, source, chunks())
    return total


def _rows_csv(rows: Iterable[Row], with_timestamp: bool, counter: list[int]) -> Iterator[bytes]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == COPY_BATCH_ROWS:
            yield _batch_csv(batch, with_timestamp)
            counter[0] += len(batch)
            batch = []
    if batch:
        yield _batch_csv(batch, with_timestamp)
        counter[0] += len(batch)


def _batch_csv(batch: list[Row], with_timestamp: bool) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if not with_timestamp:
        writer.writerows(row[:3] for row in batch)
        return text.getvalue().encode()
    users, items, ratings, stamps = zip(*batch)
    seconds = np.asarray(stamps, dtype=np.float64)
    if np.all(seconds == np.floor(seconds)):
        formatted = csv_matrix([timestamp_text(seconds.astype(np.int64))]).decode().split("\n")[:-1]
    else:  # fractional seconds: microseconds, the slow way
        micros = np.rint(seconds * 1e6).astype(np.int64).astype("datetime64[us]")
        formatted = [f"{t}+00" for t in np.datetime_as_string(micros).tolist()]
    writer.writerows(zip(users, items, ratings, formatted))
    return text.getvalue().encode()


def load_ratings(conn: Any, rows: Iterable[Row], source: SourceTable) -> int:
    """(Re)create the source table and fill it with COPY from rows (MovieLens, or any iterable of
    (user, item, rating, seconds since the epoch)); returns the number of rows loaded. Ids are
    written by `csv`, so any text round-trips."""
    counter = [0]
    copy_csv(conn, source, _rows_csv(rows, bool(source.timestamp_column), counter))
    return counter[0]
