"""Reading published recommendations: what an app server does, from S3 or from a local folder.

    recs = Recommendations.open("s3://bucket/prefix")    # or a folder with the same layout
    answer = recs.for_user("42", n=10, exclude={"item-7"})
    answer.items, answer.scores, answer.personal         # personal=False: the fallback list
    recs.for_ratings({"item-3": 5.0, "item-9": 2.0}, n=10) # a user described by ratings (fold-in)
    recs.similar_to("item-3", n=10).items                  # "more like this"; .status says why

How it stays fast and safe:
- It finds the shard holding a user by binary search over the manifest's id ranges and reads only
  that shard; an item's similar items likewise, over the manifest's `similar.shards`. Both kinds
  of shard share one bounded LRU cache, keyed by run and kind, after their checksum matched the
  manifest's: a corrupt or missing object raises `RecommendationsError` for that lookup and is
  never cached.
- It looks at `latest.json` again at most every `refresh_seconds`, with a conditional request
  (ETag; for a folder, modification time and size), so an unchanged pointer costs one small
  round trip. A new run is swapped in only once its manifest has been read whole. Each lookup
  uses one run from start to end, so an answer never mixes two runs. While a new run cannot be
  read, the previous one keeps serving and `last_refresh_error` says why.
- It is thread-safe: lookups share the cache under a lock, one thread at a time refreshes, and
  concurrent misses on the same shard load it once.
- It trusts nothing it reads: latest.json and the manifest are checked against their JSON Schemas
  (validation.py) before a run is served, every key must stay inside the prefix or the folder
  (`check_key`, and `FolderReader` resolves symbolic links), and `n` and `exclude` are checked
  before any lookup (`check_count`, `check_exclude`).
Importing it does not import Surprise.
"""

from __future__ import annotations

import bisect
import json
import logging
import numbers
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .aws import error_code
from .errors import RecommendationsError
from .manifest import SCHEMA_VERSION, load_schema
from .sharding import decode_shard
from .storage import latest_key, sha256_hex
from .validation import problems

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 5.0
DEFAULT_CACHED_SHARDS = 32


class ObjectReader(Protocol):
    def read(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        """(content, etag); content is None when `etag` still matches (not modified)."""
        ...

    def describe(self, key: str) -> str: ...


def check_key(key: object) -> str:
    """`key` if this product could have written it, else RecommendationsError.

    Keys come from latest.json and the manifest, which whoever can write the bucket or the folder
    controls. A key is relative to the prefix and made of `/`-separated segments, none empty, `.`
    or `..`, with no backslash: in a folder anything else could lead out of the root, and in S3,
    where keys are not paths, an HTTP path with `..` segments may still be normalised on its way
    to a key outside the prefix."""
    if not isinstance(key, str) or not key:
        raise RecommendationsError(f"refused key {key!r}: not a non-empty string")
    if key.startswith("/"):
        raise RecommendationsError(f"refused key {key!r}: keys are relative to the prefix")
    if "\\" in key or "\x00" in key:
        raise RecommendationsError(f"refused key {key!r}: a backslash or NUL is never in a published key")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise RecommendationsError(f"refused key {key!r}: an empty, '.' or '..' segment")
    return key


@dataclass(frozen=True)
class FolderReader:
    """Reads keys as files under `root`, never outside it: every path is resolved (symbolic links
    followed) and must still be under the resolved root."""

    root: Path

    def path(self, key: str) -> Path:
        check_key(key)
        root = self.root.resolve()
        path = (root / key).resolve()
        if not path.is_relative_to(root):
            raise RecommendationsError(
                f"{self.describe(key)} resolves to {path}, outside the folder {root}"
                " (a symbolic link?): refused"
            )
        return path

    def read(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        path = self.path(key)
        try:
            stat = path.stat()
            tag = f"{stat.st_mtime_ns}-{stat.st_size}"
            if tag == etag:
                return None, tag
            return path.read_bytes(), tag
        except FileNotFoundError:
            raise RecommendationsError(f"{path} does not exist") from None

    def describe(self, key: str) -> str:
        return str(self.root / key)


@dataclass(frozen=True)
class S3Reader:
    s3: S3Client
    bucket: str
    prefix: str

    def read(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        check_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": full}
        if etag:
            request["IfNoneMatch"] = etag
        try:
            response = self.s3.get_object(**request)
        except self.s3.exceptions.NoSuchKey:
            raise RecommendationsError(f"{self.describe(key)} does not exist") from None
        except self.s3.exceptions.ClientError as error:
            code = error_code(error)
            if code in ("304", "NotModified"):
                return None, etag or ""
            if code in ("403", "AccessDenied"):
                # S3 answers 403, not 404, for a missing key to a reader that may not list it.
                raise RecommendationsError(
                    f"{self.describe(key)} does not exist or this role may not read it (S3 answers"
                    " 403 for both without s3:ListBucket; the stack's ReaderPolicyArn grants both)"
                ) from None
            raise
        body: bytes = response["Body"].read()
        return body, str(response.get("ETag", ""))

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"


@dataclass(frozen=True)
class Answer:
    user: str
    items: list[str]
    scores: list[float]
    personal: bool  # False: the user is unknown to the model and this is the fallback list
    run_id: str

    @property
    def source(self) -> str:
        return "personal" if self.personal else "fallback"


SimilarStatus = Literal["similar", "no-list", "unknown-item", "not-published"]


@dataclass(frozen=True)
class SimilarItems:
    """An item's similar items, most similar first, with `scores` their similarity under the run's
    measure (the manifest's `similar.measure`). `status` is about the published list, before `n`
    and `exclude` trimmed it, so that an app server can tell an empty answer's causes apart:
    - "similar": the run published a list for the item;
    - "no-list": the item is in the run but has no list (fewer ratings than `similar.min_support`,
      or no item of positive similarity);
    - "unknown-item": the run does not know the item;
    - "not-published": the run has no similar items (published before they were)."""

    item: str
    items: list[str]
    scores: list[float]
    status: SimilarStatus
    run_id: str


def check_count(n: object) -> int | None:
    """How many items an answer holds: a whole number >= 1, or None for every item the run
    published. The one check behind `for_user`, `for_ratings`, `similar_to` and the CLI's `-n`: a slice would
    quietly read -1 as "all but the last", and True as 1."""
    if n is None or (type(n) is int and n >= 1):  # the common cases first: this is on every lookup
        return n
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be a whole number >= 1, or None for every published item; not {n!r}")
    if n < 1:
        raise ValueError(f"n must be a whole number >= 1, or None for every published item; not {n}")
    return int(n)


def check_exclude(exclude: Collection[str]) -> frozenset[str]:
    """The item ids never to recommend. A bare string is refused: as a collection it is its
    characters, and excluding those would silently exclude nothing the caller meant."""
    if isinstance(exclude, str | bytes):
        given = type(exclude).__name__
        raise TypeError(f"exclude must be a collection of item ids (a set or list of strings), not a {given}")
    banned = frozenset(exclude)
    for item in banned:
        if not isinstance(item, str):
            raise TypeError(f"exclude must be a collection of item ids (strings); it holds {item!r}")
    return banned


def _trimmed(
    found: tuple[Sequence[str], Sequence[float]], banned: frozenset[str], n: int | None
) -> tuple[list[str], list[float]]:
    """A published list without the banned items, cut to n (None: all of it)."""
    items, scores = list(found[0]), list(found[1])
    if banned:
        kept = [(i, s) for i, s in zip(items, scores) if i not in banned]
        items, scores = [i for i, _ in kept], [s for _, s in kept]
    return items[:n], scores[:n]


def _read(reader: ObjectReader, key: str) -> bytes:
    data, _ = reader.read(key)
    if data is None:  # pragma: no cover - only a conditional read answers "not modified"
        raise RecommendationsError(f"{reader.describe(key)} could not be read")
    return data


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise RecommendationsError(f"{where}: not JSON ({error})") from None


_schemas: dict[str, dict[str, Any]] = {}
SHOWN_PROBLEMS = 5


def _checked(document: Any, name: str, where: str) -> dict[str, Any]:
    """`document` if it is what the schema `name` describes, else RecommendationsError naming the
    fields: a run is refused whole here, rather than with a KeyError or TypeError in some later
    lookup. Fields the schema does not know are accepted (see validation.py)."""
    version = document.get("schema_version") if isinstance(document, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        raise RecommendationsError(
            f"{where}: schema_version: {version} is not the version this client reads ({SCHEMA_VERSION}):"
            " the output was written by another version of the product"
        )
    schema = _schemas.get(name)
    if schema is None:
        schema = _schemas[name] = load_schema(name)
    found = problems(document, schema)
    if name == "manifest" and not found:
        fallback = document["fallback"]
        if len(fallback["items"]) != len(fallback["scores"]):
            found.append(f"fallback: {len(fallback['items'])} items but {len(fallback['scores'])} scores")
    if found:
        more = " (and more)" if len(found) > SHOWN_PROBLEMS else ""
        raise RecommendationsError(f"{where}: " + "; ".join(found[:SHOWN_PROBLEMS]) + more)
    checked: dict[str, Any] = document
    return checked


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class _Kind:
    """A kind of shard object: what its records and the manifest's entries for it call things."""

    name: str  # a record's id field ("user", "item"), and the kind's part of a cache key
    count: str  # the manifest entry's field counting its records ("users", "items")


USERS = _Kind("user", "users")
ITEMS = _Kind("item", "items")


@dataclass(frozen=True)
class _ShardIndex:
    """Shards of one kind sorted by the UTF-8 bytes of their first id, for a binary search."""

    kind: _Kind
    shards: list[dict[str, Any]] = field(default_factory=list)
    firsts: list[bytes] = field(default_factory=list)
    lasts: list[bytes] = field(default_factory=list)

    @classmethod
    def build(cls, kind: _Kind, shards: list[dict[str, Any]]) -> _ShardIndex:
        first, last = f"first_{kind.name}", f"last_{kind.name}"
        ordered = sorted(shards, key=lambda s: _utf8(s[first]))
        return cls(kind, ordered, [_utf8(s[first]) for s in ordered], [_utf8(s[last]) for s in ordered])

    def shard_for(self, some_id: str) -> dict[str, Any] | None:
        key = _utf8(some_id)
        position = bisect.bisect_right(self.firsts, key) - 1
        if position < 0:
            return None
        return self.shards[position] if key <= self.lasts[position] else None


@dataclass(frozen=True)
class _Run:
    """One published run, as its manifest describes it; never changes once built. `similar` is
    None for a run published before similar items were."""

    manifest: dict[str, Any]
    latest_etag: str
    users: _ShardIndex
    similar: _ShardIndex | None

    @classmethod
    def build(cls, manifest: dict[str, Any], latest_etag: str) -> _Run:
        section = manifest.get("similar")
        similar = _ShardIndex.build(ITEMS, section["shards"]) if section is not None else None
        return cls(manifest, latest_etag, _ShardIndex.build(USERS, manifest["shards"]), similar)

    @property
    def run_id(self) -> str:
        run_id: str = self.manifest["run_id"]
        return run_id

    def shard_for(self, user_id: str) -> dict[str, Any] | None:
        return self.users.shard_for(user_id)

    def similar_shard_for(self, item_id: str) -> dict[str, Any] | None:
        return self.similar.shard_for(item_id) if self.similar is not None else None


Records = dict[str, tuple[tuple[str, ...], tuple[float, ...]]]


class Recommendations:
    """Recommendations of the newest published run, kept current; see the module docstring."""

    def __init__(
        self,
        reader: ObjectReader,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        cached_shards: int = DEFAULT_CACHED_SHARDS,
    ) -> None:
        self.reader = reader
        self.refresh_seconds = refresh_seconds
        self.cached_shards = max(1, cached_shards)
        self.last_refresh_error: str | None = None
        # keyed by (run, kind of shard, index): a user shard and an item shard never share a key
        self._cache: OrderedDict[tuple[str, str, int], Records] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._loading: dict[tuple[str, str, int], threading.Lock] = {}
        self._refresh_lock = threading.Lock()
        self._models: dict[str, tuple[Any, dict[str, Any]]] = {}
        run = self._read_run(None)
        if run is None:  # pragma: no cover - no etag was given, so the content is always read
            raise RecommendationsError("latest.json could not be read")
        self._run = run
        self._checked_at = time.monotonic()

    @classmethod
    def open(
        cls,
        location: str | Path,
        s3: S3Client | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        cached_shards: int = DEFAULT_CACHED_SHARDS,
    ) -> Recommendations:
        """From `s3://bucket/prefix` or a folder holding `latest.json`."""
        text = str(location)
        reader: ObjectReader
        if text.startswith("s3://"):
            bucket, _, prefix = text[len("s3://") :].partition("/")
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            reader = S3Reader(s3, bucket, prefix.strip("/"))
        else:
            root = Path(text)
            if not (root / "latest.json").is_file():
                raise RecommendationsError(f"{root} has no latest.json: not a published output folder")
            reader = FolderReader(root)
        return cls(reader, refresh_seconds, cached_shards)

    # -- the run being served -------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def manifest(self) -> dict[str, Any]:
        return self._run.manifest

    def _read_run(self, etag: str | None) -> _Run | None:
        """The run latest.json points to, or None when latest.json is unchanged."""
        data, new_etag = self.reader.read(latest_key(""), etag)
        if data is None:
            return None
        where = self.reader.describe(latest_key(""))
        latest = _checked(_json(data, where), "latest", where)
        manifest_key: str = latest["manifest"]
        where = self.reader.describe(manifest_key)
        manifest = _checked(_json(_read(self.reader, manifest_key), where), "manifest", where)
        if manifest["run_id"] != latest["run_id"]:
            raise RecommendationsError(
                f"{self.reader.describe(latest_key(''))} names run {latest['run_id']} but its manifest"
                f" is run {manifest['run_id']}"
            )
        return _Run.build(manifest, new_etag)

    def refresh(self) -> bool:
        """Look at latest.json now; True if a new run is now served."""
        with self._refresh_lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        self._checked_at = time.monotonic()
        try:
            run = self._read_run(self._run.latest_etag)
        except RecommendationsError as error:
            self.last_refresh_error = str(error)
            logger.warning("keeping run %s: %s", self._run.run_id, error)
            return False
        self.last_refresh_error = None
        if run is None or run.run_id == self._run.run_id:
            return False
        self._run = run
        return True

    def _current(self) -> _Run:
        if time.monotonic() - self._checked_at >= self.refresh_seconds and self._refresh_lock.acquire(
            blocking=False
        ):
            try:
                if time.monotonic() - self._checked_at >= self.refresh_seconds:
                    self._refresh_locked()
            finally:
                self._refresh_lock.release()
        return self._run

    # -- shards ---------------------------------------------------------------------------

    def shard_for(self, user_id: str) -> dict[str, Any] | None:
        """The manifest entry of the shard whose id range holds the user (no object is read)."""
        return self._run.shard_for(user_id)

    def similar_shard_for(self, item_id: str) -> dict[str, Any] | None:
        """The manifest entry of the item shard whose id range holds the item, None when none
        does or the run has no similar items (no object is read)."""
        return self._run.similar_shard_for(item_id)

    def _records(self, run: _Run, shard: dict[str, Any], kind: _Kind = USERS) -> Records:
        key = (run.run_id, kind.name, int(shard["index"]))
        # The warm path takes no lock: OrderedDict's get and move_to_end are single C calls under
        # the GIL. A lock here would be held across GIL switches and queue every other thread.
        records = self._cache.get(key)
        if records is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
                self._cache.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile; the records are still valid
                pass
            return records
        with self._cache_lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one thread loads a shard; the others wait for it
            with self._cache_lock:
                records = self._cache.get(key)
            if records is None:
                records = self._load(shard, kind)
                with self._cache_lock:
                    self._cache[key] = records
                    while len(self._cache) > self.cached_shards:
                        self._cache.popitem(last=False)
        with self._cache_lock:
            self._loading.pop(key, None)
        return records

    def _load(self, shard: dict[str, Any], kind: _Kind) -> Records:
        data = _read(self.reader, shard["key"])
        if sha256_hex(data) != shard["sha256"]:
            raise RecommendationsError(
                f"{self.reader.describe(shard['key'])} does not match the manifest's checksum"
            )
        # tuples of strings and floats: the garbage collector stops tracking them, so a large
        # cache does not make every full collection (and the lookup it interrupts) slow
        try:
            name = kind.name
            records = {r[name]: (tuple(r["items"]), tuple(r["scores"])) for r in decode_shard(data)}
        except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as error:
            # the checksum ties the object to the manifest, not to the format: whoever wrote one
            # could write the other
            raise RecommendationsError(
                f"{self.reader.describe(shard['key'])} is not a shard of gzip JSON Lines records"
                f" ({type(error).__name__}: {error})"
            ) from None
        if len(records) != shard[kind.count]:
            raise RecommendationsError(
                f"{self.reader.describe(shard['key'])} holds {len(records)} {kind.count},"
                f" not {shard[kind.count]}"
            )
        return records

    # -- answers --------------------------------------------------------------------------

    def for_user(self, user_id: str, n: int | None = None, exclude: Collection[str] = ()) -> Answer:
        """The user's recommendations, or the fallback list for a user the model does not know.
        `n`: see `check_count`; `exclude`: see `check_exclude`."""
        n = check_count(n)
        banned = check_exclude(exclude) if exclude else frozenset()
        run = self._current()
        shard = run.shard_for(user_id)
        found = self._records(run, shard).get(user_id) if shard is not None else None
        personal = found is not None
        if found is None:
            fallback = run.manifest["fallback"]
            found = (fallback["items"], fallback["scores"])
        items, scores = _trimmed(found, banned, n)
        return Answer(user_id, items, scores, personal, run.run_id)

    def similar_to(self, item_id: str, n: int | None = None, exclude: Collection[str] = ()) -> SimilarItems:
        """The item's similar items as the run published them; an empty answer, never an error,
        for an item without a list, and `status` says which case it is (see SimilarItems).
        `n`: see `check_count` (None: the whole published list, up to the run's `top_n`);
        `exclude`: see `check_exclude`."""
        n = check_count(n)
        banned = check_exclude(exclude) if exclude else frozenset()
        run = self._current()
        if run.similar is None:
            return SimilarItems(item_id, [], [], "not-published", run.run_id)
        shard = run.similar.shard_for(item_id)
        found = self._records(run, shard, ITEMS).get(item_id) if shard is not None else None
        if found is None:
            return SimilarItems(item_id, [], [], "unknown-item", run.run_id)
        status: SimilarStatus = "similar" if found[0] else "no-list"
        items, scores = _trimmed(found, banned, n)
        return SimilarItems(item_id, items, scores, status, run.run_id)

    def for_ratings(
        self, ratings: Mapping[str, float], n: int | None = 10, exclude: Collection[str] = ()
    ) -> Answer:
        """Recommendations for a user described by ratings given now, folded into the published
        model; the rated items are excluded. `n` as in `for_user`: None is the run's `top_n`, as
        many as a published list holds. Raises `FoldInUnsupportedError` (a ValueError) for an
        algorithm without fold-in; `foldin.SUPPORTED` lists those with it."""
        from .foldin import recommend_for_ratings

        count = check_count(n)
        banned = check_exclude(exclude)
        run = self._current()
        model, params = self._model(run)
        if count is None:
            count = int(run.manifest["top_n"])
        items, scores = recommend_for_ratings(model, params, ratings, count, banned)
        known = model.item_index()
        personal = any(item in known for item in ratings)  # no known item: the fallback list
        return Answer("", items, scores, personal, run.run_id)

    def _model(self, run: _Run) -> tuple[Any, dict[str, Any]]:
        """The run's model arrays and parameters, read on first use (they are large)."""
        with self._cache_lock:
            held = self._models.get(run.run_id)
        if held is None:
            held = (self._model_arrays(run.manifest["model"]), self._model_params(run.manifest["model"]))
            with self._cache_lock:
                self._models = {run.run_id: held}
        return held

    def _model_arrays(self, described: dict[str, Any]) -> Any:
        """model.npz, checked against the manifest's size and SHA-256 when it has them (runs
        published before they were recorded do not: their model is loaded unchecked). Either way
        a model that cannot be read is a RecommendationsError, never numpy's or zipfile's."""
        from .model import ModelArrays

        key = described["key"]
        data = _read(self.reader, key)
        size, digest = described.get("bytes"), described.get("sha256")
        if size is not None and len(data) != size:
            raise RecommendationsError(
                f"{self.reader.describe(key)} does not match the manifest's size and SHA-256"
                f" ({len(data)} bytes, not {size})"
            )
        if digest is not None and sha256_hex(data) != digest:
            raise RecommendationsError(
                f"{self.reader.describe(key)} does not match the manifest's size and SHA-256"
                " (its SHA-256 differs)"
            )
        try:
            return ModelArrays.from_bytes(data)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as error:
            raise RecommendationsError(
                f"{self.reader.describe(key)} is not a model this client reads ({type(error).__name__}:"
                f" {error})"
            ) from None

    def _model_params(self, described: dict[str, Any]) -> dict[str, Any]:
        key = described["metadata_key"]
        metadata = _json(_read(self.reader, key), self.reader.describe(key))
        params = metadata.get("params") if isinstance(metadata, dict) else None
        if not isinstance(params, dict):
            raise RecommendationsError(f"{self.reader.describe(key)}: params: not an object of parameters")
        return params
