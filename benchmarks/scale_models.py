"""What `auto` spends at MovieLens 25M's shape, and a predictor's memory for one ItemKNN shard.

    .venv/bin/pip install -e '.[bench]'                          # implicit and scipy
    .venv/bin/python benchmarks/scale_models.py                  # 25M ratings x 59,000 items x 162,000 users
    .venv/bin/python benchmarks/scale_models.py --ratings 5e6 --users 32400   # quicker, same catalogue
    .venv/bin/python benchmarks/scale_models.py --stages predict --work /tmp/scale-models   # again, reusing

The ratings come from `recommender.sample_data`'s block generator (`SyntheticSpec.with_total`, the
seed 0, its default structure), generated block by block into compact arrays and never loaded into
PostgreSQL. Then each stage runs in a fresh Python process that loads them from `--work` and reports
its seconds and its peak resident memory (VmHWM: the whole process, its imports and the ratings it
holds included, as Train's Lambda would hold them), beside "held", its resident memory just before
the stage's work:
- `fit-ItemKNN`, `fit-ALS`: `training.fit` of each with the product's defaults on every rating: the
  final fit Train makes when `auto` chooses it. `fit-ItemKNN` also writes the model as Train does
  (`model_from_fit`; the item side and the first shard's user part of a 5,000-user shard plan) for
  the `predict` stage.
- `evaluate-ItemKNN`, `evaluate-ALS`, `evaluate-SVD`: `evaluation.evaluate` on
  `evaluation.evaluation_split` (the sample of users Train measures above EVALUATION_MAX_RATINGS):
  what `auto` spends on each candidate. The split's own seconds are reported apart (Train makes it
  once for every candidate).
- `predict`: the predictor's path for that shard, as `steps.predict` runs it: the item side and
  the user part read as bytes, `ModelArrays.from_bytes`, `with_users`, `scoring.recommend` (the
  kernel's own block sizes) and `encode_shard`. Peak beside the floor, the bytes of the joined
  model's arrays, and beside the resident memory after the imports.
`--stages` picks some of them, or adds another algorithm's (`evaluate-EASE`, `fit-SVD`).
Seconds are wall time on a shared machine; CPU seconds are printed beside them. Prints a table,
then everything as JSON (--json also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recommender.local.bootstrap import status_bytes

MIB = 1024 * 1024
SCALE = (1.0, 5.0)
SHARD_USERS = 5000
TOP_N = 10
STAGES = (
    "data",
    "fit-ItemKNN",
    "predict",
    "fit-ALS",
    "evaluate-ItemKNN",
    "evaluate-ALS",
    "evaluate-SVD",
)


def rss() -> int:
    return status_bytes("VmRSS") or 0


def peak() -> int:
    return status_bytes("VmHWM") or 0


# --- the stages, each in its own process -------------------------------------------------------


def make_data(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate the ratings block by block into arrays numbered as a snapshot would number them
    (first appearance), and save them uncompressed for the other stages."""
    from recommender import evaluation, sample_data

    spec = sample_data.SyntheticSpec.with_total(
        args.users, args.items, args.ratings, seed=args.seed, **sample_data.calibrated(args.items)
    )
    started, cpu = time.perf_counter(), time.process_time()
    users, items, stars, when = [], [], [], []
    for block in sample_data.synthetic_blocks(spec):
        users.append(block.users.astype(np.int32))
        items.append(block.items.astype(np.int32))
        stars.append(block.ratings.astype(np.float32))
        when.append(block.timestamps)
    generated = time.perf_counter() - started
    user_codes, user_index = evaluation._renumber(np.concatenate(users))
    item_codes, item_index = evaluation._renumber(np.concatenate(items))
    np.savez(
        work / "ratings.npz",
        user_codes=user_codes,
        item_codes=item_codes,
        users=user_index,
        items=item_index,
        ratings=np.concatenate(stars),
        timestamps=np.concatenate(when).astype(np.float64),
        item_count=np.int64(args.items),
    )
    return {
        "ratings": int(user_index.size),
        "users": int(user_codes.size),
        "items": int(item_codes.size),
        "generate_seconds": generated,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


def load_ratings(work: Path) -> Any:
    from recommender import sample_data
    from recommender.dataset import Ratings

    with np.load(work / "ratings.npz") as npz:
        width = int(npz["item_count"])
        return Ratings(
            user_ids=[str(u + 1) for u in npz["user_codes"].tolist()],
            item_ids=[sample_data.item_id(i, width) for i in npz["item_codes"].tolist()],
            users=npz["users"],
            items=npz["items"],
            ratings=npz["ratings"].astype(np.float64),
            timestamps=npz["timestamps"],
        )


def fit_stage(work: Path, algorithm: str) -> dict[str, Any]:
    from recommender import kernels, training
    from recommender.sharding import plan_shards, shard_users

    ratings = load_ratings(work)
    held, started, cpu = rss(), time.perf_counter(), time.process_time()
    fitted = training.fit(ratings, algorithm, {}, SCALE)
    out: dict[str, Any] = {"fit_seconds": fitted.seconds, "params": fitted.params}
    model = training.model_from_fit(fitted)
    out["model_seconds"] = time.perf_counter() - started - fitted.seconds
    if algorithm == "ItemKNN":  # what Train writes: the item side and the first shard's users
        layout = kernels.user_layout(model)
        if layout is None:
            raise SystemExit("ItemKNN's model is not split into user parts")
        plan = plan_shards(model, SHARD_USERS)
        part = model.user_part(shard_users(model, plan[0]), layout)
        (work / "item_knn_model.npz").write_bytes(model.item_side(layout).to_bytes())
        (work / "item_knn_users.npz").write_bytes(part.to_bytes())
        similarity = model.arrays
        out["neighbours"] = {
            "entries": int(similarity["sim_data"].size),
            "per_item_mean": float(similarity["sim_data"].size / model.n_items),
            "items_with_fewer_than_K": int(
                np.count_nonzero(np.diff(similarity["sim_indptr"]) < int(similarity["K"]))
            ),
        }
        out["shard_users"] = len(part.user_ids)
        out["model_bytes"] = (work / "item_knn_model.npz").stat().st_size
        out["user_part_bytes"] = (work / "item_knn_users.npz").stat().st_size
    out.update(seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu, held_bytes=held)
    return out


def evaluate_stage(work: Path, algorithm: str) -> dict[str, Any]:
    from recommender import evaluation

    ratings = load_ratings(work)
    held, started = rss(), time.perf_counter()
    split = evaluation.evaluation_split(ratings)
    split_seconds = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    report = evaluation.evaluate(ratings, algorithm, {}, SCALE, k=TOP_N, split=split)
    return {
        "split_seconds": split_seconds,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "fit_seconds": report["model"]["seconds"],
        "ndcg": report["model"][f"ndcg@{TOP_N}"],
        "popularity_ndcg": report["popularity"][f"ndcg@{TOP_N}"],
        "sample": report["sample"],
        "split": report["split"],
        "held_bytes": held,
    }


def array_bytes(model: Any) -> int:
    """The bytes of the model's numpy arrays: the floor of any process that holds the model."""
    named = [value for value in vars(model).values() if isinstance(value, np.ndarray)]
    return sum(value.nbytes for value in [*named, *model.arrays.values()])


def predict_stage(work: Path) -> dict[str, Any]:
    from recommender.model import ModelArrays, UserPart
    from recommender.scoring import kernel_for, recommend
    from recommender.sharding import encode_shard

    imported = rss()
    started, cpu = time.perf_counter(), time.process_time()
    model = ModelArrays.from_bytes((work / "item_knn_model.npz").read_bytes())
    part = UserPart.from_bytes((work / "item_knn_users.npz").read_bytes())
    joined = model.with_users(part)
    del model, part
    loaded = rss()
    kernel = kernel_for(joined)
    data, count = encode_shard(joined, recommend(joined, joined.user_order, TOP_N, kernel))
    return {
        "users": count,
        "items": joined.n_items,
        "block_rows": kernel.block_rows(),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "imports_bytes": imported,
        "loaded_bytes": loaded,
        "model_array_bytes": array_bytes(joined),
        "shard_object_bytes": len(data),
    }


def run_stage(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = args.work
    if name == "data":
        result = make_data(args, work)
    elif name.startswith("fit-"):
        result = fit_stage(work, name.removeprefix("fit-"))
    elif name.startswith("evaluate-"):
        result = evaluate_stage(work, name.removeprefix("evaluate-"))
    else:
        result = predict_stage(work)
    result["peak_bytes"] = peak()
    return result


# --- the parent ---------------------------------------------------------------------------------


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n  {'stage':<18}{'seconds':>10}{'CPU s':>10}{'fit s':>10}{'held MiB':>10}{'peak MiB':>10}  notes"
    )
    for name, r in results.items():
        fit = r.get("fit_seconds")
        notes = ""
        if name.startswith("evaluate-"):
            notes = (
                f"NDCG@{TOP_N} {r['ndcg']:.4f}, popularity {r['popularity_ndcg']:.4f};"
                f" split {r['split_seconds']:.1f} s of {r['sample'].get('ratings', 0):,} ratings"
            )
        elif name == "data":
            notes = f"{r['ratings']:,} ratings, {r['users']:,} users, {r['items']:,} items"
        elif name == "predict":
            notes = (
                f"{r['users']:,} users x {r['items']:,} items, blocks of {r['block_rows']} users;"
                f" model arrays {mib(r['model_array_bytes'])} MiB, after imports {mib(r['imports_bytes'])} MiB,"
                f" after loading {mib(r['loaded_bytes'])} MiB"
            )
        elif name == "fit-ItemKNN":
            n = r["neighbours"]
            notes = (
                f"{n['per_item_mean']:.1f} neighbours per item ({n['items_with_fewer_than_K']:,} items below K);"
                f" model.npz {mib(r['model_bytes'])} MiB"
            )
        print(
            f"  {name:<18}{r['seconds']:>10.1f}{r['cpu_seconds']:>10.1f}"
            f"{'-' if fit is None else f'{fit:.1f}':>10}{mib(r.get('held_bytes')):>10}{mib(r['peak_bytes']):>10}  {notes}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratings", type=lambda text: int(float(text)), default=25_000_000)
    parser.add_argument("--users", type=int, default=162_000)
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scale-models")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated, of {', '.join(STAGES)}, or fit-NAME / evaluate-NAME for another algorithm",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one stage, its result on stdout's last line
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_stage(args.child, args)))
        return 0
    stages = [stage for stage in args.stages.split(",") if stage]
    unknown = sorted(
        stage for stage in stages if stage not in STAGES and not stage.startswith(("fit-", "evaluate-"))
    )
    if unknown:
        parser.error(f"unknown stages {unknown}")
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for stage in stages:
        print(f"{stage}: in a fresh process ...", flush=True)
        command = [sys.executable, __file__, *sys.argv[1:], "--child", stage]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"the stage {stage} failed")
        results[stage] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[stage]
        print(f"  {r['seconds']:.1f} s, peak {mib(r['peak_bytes'])} MiB", flush=True)
    print_table(results)
    figures = {
        "benchmark": "scale_models",
        "shape": {"ratings": args.ratings, "users": args.users, "items": args.items, "seed": args.seed},
        "load_average": os.getloadavg()[0],
        "stages": results,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
