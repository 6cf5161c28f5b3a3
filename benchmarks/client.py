"""The app server's reads: warm lookups per second, p50/p99 latency, cold shard loads, for users'
lists (`for_user`) and items' similar items (`similar_to`).

    .venv/bin/python benchmarks/client.py              # 50,000 users, 5,000 per shard

A run of 50,000 synthetic users is published by the real workflow (embedded PostgreSQL, the ASL
on moto), copied to S3 served by moto in server mode on localhost (real HTTP), and read back with
`recommender.client.Recommendations`:
- cold: the first lookup in each shard (one GET, checksum, decompress, parse);
- warm: lookups once every shard is cached, from 1, 4 and 8 threads (90% known users, 10%
  unknown ones who get the fallback), with the latency of every call;
- the same for similar items: the first lookup in each item shard cold, then warm lookups of
  every item (90% known items, 10% unknown ones who get an empty answer), in the same process
  and cache.
Prints a table, then JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from moto.server import ThreadedMotoServer

from recommender.client import Recommendations
from recommender.config import SourceTable
from recommender.database import connect
from recommender.local import LocalEngine, embedded_postgres
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

COLD_ROUNDS = 5
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request


def publish_run(users: int, items: int, per_shard: int, out: Path) -> None:
    spec = SyntheticSpec(users=users, items=items, ratings_per_user=20, seed=5)
    with embedded_postgres() as url:
        with closing(connect(url, "recommender-benchmark", readonly=False)) as conn:
            load_ratings(conn, synthetic_ratings(spec), SourceTable())
        run_input = {
            "users_per_shard": per_shard,
            "max_concurrency": 2,
            "algorithm": "SVD",  # params apply to one named algorithm, not to "auto"
            "params": {"n_factors": 20, "n_epochs": 5},
        }
        with LocalEngine(url) as engine:
            result = engine.run(run_input, name="client-benchmark")
            if result.status != "SUCCEEDED":
                raise SystemExit(f"publishing failed: {result.error}: {result.cause}")
            engine.export(out)


def upload(folder: Path, s3: S3Client, bucket: str, prefix: str) -> None:
    s3.create_bucket(Bucket=bucket)
    for path in folder.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder)}", Body=path.read_bytes())


def lookups(
    lookup: Callable[[str], object], ids: list[str], threads: int, per_thread: int
) -> dict[str, float]:
    """`lookup` (for_user or similar_to) of known ids, and 10% unknown ones, from `threads` threads."""
    latencies: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(slot: int) -> None:
        rng = random.Random(slot)
        own = latencies[slot]
        picks = [rng.choice(ids) if rng.random() < 0.9 else f"new-{rng.random()}" for _ in range(per_thread)]
        barrier.wait()
        for some_id in picks:
            started = time.perf_counter_ns()
            lookup(some_id)
            own.append(time.perf_counter_ns() - started)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    every = sorted(x for own in latencies for x in own)
    return {
        "threads": threads,
        "lookups": len(every),
        "per_second": len(every) / seconds,
        "p50_us": every[len(every) // 2] / 1000,
        "p99_us": every[int(len(every) * 0.99)] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--users-per-shard", type=int, default=5_000)
    parser.add_argument("--lookups", type=int, default=200_000, help="warm lookups per thread count")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        publish_run(args.users, args.items, args.users_per_shard, out)
        print(f"published {args.users:,} users in {time.perf_counter() - started:.0f} s")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            s3 = boto3.client(
                "s3",
                endpoint_url=f"http://{host}:{port}",
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            upload(out, s3, "bench", "recs")
            started = time.perf_counter()
            recs = Recommendations.open("s3://bench/recs", s3=s3, cached_shards=64)
            open_ms = (time.perf_counter() - started) * 1000
            cold = []
            for _ in range(COLD_ROUNDS):  # every shard loaded cold, several times over
                recs._cache.clear()
                for shard in recs.manifest["shards"]:
                    started = time.perf_counter()
                    recs.for_user(shard["first_user"])
                    cold.append((time.perf_counter() - started) * 1000)
            # every user id, from the shards now cached (keys: run, kind, index)
            every_user = [u for key, records in recs._cache.items() if key[1] == "user" for u in records]
            warm = [lookups(recs.for_user, every_user, t, args.lookups // t) for t in (1, 4, 8)]
            item_shards = recs.manifest["similar"]["shards"]
            cold_similar = []
            for _ in range(COLD_ROUNDS):
                for key in [k for k in recs._cache if k[1] == "item"]:
                    del recs._cache[key]
                for shard in item_shards:
                    started = time.perf_counter()
                    recs.similar_to(shard["first_item"])
                    cold_similar.append((time.perf_counter() - started) * 1000)
            every_item = [i for key, records in recs._cache.items() if key[1] == "item" for i in records]
            warm_similar = [lookups(recs.similar_to, every_item, t, args.lookups // t) for t in (1, 4, 8)]
        finally:
            server.stop()

    shard_bytes = [s["bytes"] for s in recs.manifest["shards"]]
    print(
        f"\nS3 over HTTP (moto server on localhost), {len(recs.manifest['shards'])} shards of"
        f" {args.users_per_shard:,} users ({statistics.median(shard_bytes) / 1024:.0f} KiB each, gzip)"
    )
    print(f"  open (latest.json + manifest)   {open_ms:7.1f} ms")
    cold.sort()
    print(
        f"  cold shard load ({len(cold)} loads)    median {statistics.median(cold):6.1f} ms"
        f"   p90 {cold[int(len(cold) * 0.9)]:6.1f} ms   max {cold[-1]:6.1f} ms"
    )
    print_warm(warm)
    item_bytes = [s["bytes"] for s in item_shards]
    cold_similar.sort()
    print(
        f"\nsimilar_to: {len(item_shards)} item shards of {statistics.median([s['items'] for s in item_shards]):,.0f}"
        f" items ({statistics.median(item_bytes) / 1024:.0f} KiB each, gzip), measure"
        f" {recs.manifest['similar']['measure']}"
    )
    print(
        f"  cold item shard load ({len(cold_similar)} loads)  median {statistics.median(cold_similar):6.1f} ms"
        f"   max {cold_similar[-1]:6.1f} ms"
    )
    print_warm(warm_similar)
    print(
        json.dumps(
            {
                "open_ms": open_ms,
                "cold_shard_ms": cold,
                "warm": warm,
                "cold_item_shard_ms": cold_similar,
                "warm_similar": warm_similar,
            },
            indent=1,
        )
    )


def print_warm(rows: list[dict[str, float]]) -> None:
    print(f"  {'threads':>7} {'lookups/s':>12} {'p50 us':>8} {'p99 us':>8}")
    for row in rows:
        print(f"  {row['threads']:>7} {row['per_second']:12,.0f} {row['p50_us']:8.1f} {row['p99_us']:8.1f}")


if __name__ == "__main__":
    main()
