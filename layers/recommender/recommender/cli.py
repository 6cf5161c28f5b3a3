"""`recommender`: load ratings into PostgreSQL (load), run the workflow locally (demo, run), read its
output (recommend, similar), compare algorithms offline (evaluate) and check a deployed stack (smoke)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import ExitStack, closing
from datetime import datetime
from pathlib import Path
from typing import Any

from . import strict_json
from .client import Recommendations, check_count
from .config import RunConfig, SourceTable
from .database import check_url, connect
from .errors import ConfigError, DatabaseUnavailableError, RecommenderError

DEFAULT_OUT = Path("recommender-output")
DEMO_SOURCE = {"table": "ratings", "timestamp_column": "rated_at"}
ML25M_SHAPE = (162_000, 59_000, 25_000_000)  # users, items, ratings: `load --synthetic` defaults


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("state machine input (all optional; see README)")
    group.add_argument("--input", type=Path, help="a JSON file with the state machine input")
    group.add_argument(
        "--algorithm",
        help="auto (the default: Train measures candidates and fits the best), EASE, ALS, ItemKNN"
        " or a Surprise algorithm",
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="algorithm parameter; VALUE is JSON (e.g. n_factors=50, sim_options='{\"user_based\":false}')",
    )
    group.add_argument("--top-n", type=int)
    group.add_argument("--users-per-shard", type=int)
    group.add_argument("--max-concurrency", type=int)
    group.add_argument("--rating-scale", type=float, nargs=2, metavar=("LOW", "HIGH"))
    group.add_argument("--table")
    group.add_argument("--schema")
    group.add_argument("--user-column")
    group.add_argument("--item-column")
    group.add_argument("--rating-column")
    group.add_argument("--timestamp-column")
    _add_database_options(parser, "(default: $DATABASE_URL, else an embedded server in a temporary folder)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder the run's objects are exported to (default {DEFAULT_OUT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--layer",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder holding python/, given to every step as one more Lambda layer (your own"
        " algorithm's module, as you would deploy it); repeatable",
    )


def _add_database_options(parser: argparse.ArgumentParser, default: str) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help=f"PostgreSQL URL {default}"
    )
    target.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="use an embedded PostgreSQL (pgserver) whose data lives in DIR, created if missing:"
        " what `recommender load --data-dir DIR` loaded is there for `run --data-dir DIR`",
    )


def run_input_from_args(args: argparse.Namespace, source_defaults: dict[str, Any]) -> dict[str, Any]:
    """The state machine input: --input file first, then the individual options over it."""
    run_input: dict[str, Any] = _input_file(args.input) if args.input else {}
    for name in ("algorithm", "top_n", "users_per_shard", "max_concurrency"):
        if getattr(args, name) is not None:
            run_input[name] = getattr(args, name)
    if args.rating_scale:
        run_input["rating_scale"] = list(args.rating_scale)
    if args.param:
        params = dict(run_input.get("params") or {})
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--param {item!r} is not KEY=VALUE")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        run_input["params"] = params
    source = {**source_defaults, **(run_input.get("source") or {})}
    for name in ("table", "schema", "user_column", "item_column", "rating_column", "timestamp_column"):
        if getattr(args, name) is not None:
            source[name] = getattr(args, name)
    if source:
        run_input["source"] = source
    RunConfig.from_input(run_input)  # a bad option fails here, before any server starts
    return run_input


def _input_file(path: Path) -> Any:
    """The JSON document of an `--input` file; a file that cannot be read or parsed is the
    command's wrong input, said in one line."""
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"--input {path}: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, or not JSON
        raise ConfigError(f"--input {path}: not a JSON document ({error})") from None


class Progress:
    """Prints the states as the execution enters and leaves them, and the Map's item counts."""

    def __init__(self, engine: Any, quiet: bool) -> None:
        self.engine, self.quiet = engine, quiet
        self.started = time.monotonic()
        self.entered: dict[str, datetime] = {}
        self.seconds: dict[str, float] = {}
        self.last_counts: tuple[int, ...] | None = None
        self.in_map = False

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"  [{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def on_event(self, event: dict[str, Any]) -> None:
        event_type, at = event["type"], event["timestamp"]  # the engine's own clock, not our polling
        if event_type.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            self.entered[name] = at
            self.in_map = event_type == "MapStateEntered"
            self.say(f"{name} ...")
        elif event_type.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            self.seconds[name] = (at - self.entered.get(name, at)).total_seconds()
            self.in_map = False if event_type == "MapStateExited" else self.in_map
            self.say(f"{name}: done in {self.seconds[name]:.1f}s")
        elif event_type.endswith("Failed") and "executionFailedEventDetails" in event:
            details = event["executionFailedEventDetails"]
            self.say(f"FAILED: {details.get('error')}: {details.get('cause', '')[:300]}")

    def on_tick(self, execution_arn: str) -> None:
        if not self.in_map:
            return
        counts = self.engine.map_progress(execution_arn)
        if counts:
            key = (counts["succeeded"], counts["failed"], counts["total"])
            if key != self.last_counts:
                self.last_counts = key
                self.say(
                    f"  shards: {counts['succeeded']}/{counts['total']} done,"
                    f" {counts['running']} running, {counts['failed']} failed"
                )


def execute(
    database_url: str, run_input: dict[str, Any], out: Path, quiet: bool, layers: list[Path] | None = None
) -> int:
    """Run the state machine locally; export the bucket; print a summary. Returns an exit code."""
    from .local import LocalEngine

    for layer in layers or []:
        if not (layer / "python").is_dir():
            raise ConfigError(f"--layer {layer}: a layer folder holds python/ (what /opt/python becomes)")
    with LocalEngine(database_url, layers=layers) as engine:
        progress = Progress(engine, quiet)
        held = engine.load_folder(out)
        print(f"Running statemachine/recommender.asl.json on moto (input: {strict_json.dumps(run_input)})")
        print(f"  {engine.sandbox_support}")
        if held:
            print(f"  {out} holds {held} object(s) of earlier runs: this run sees them as S3 would")
        result = engine.run(run_input, on_event=progress.on_event, on_tick=progress.on_tick)
        published = engine.export(out)
    if result.status != "SUCCEEDED":
        print(f"\nThe run {result.name} {result.status}: {result.error}\n  {result.cause}", file=sys.stderr)
        print(f"Nothing was published; what the earlier steps wrote is in {out.resolve()}")
        return 1
    if not published.latest_moved and published.latest_run_id is None:
        print(f"\nThe run {result.name} succeeded, but the quality gate held it: nothing is published yet.")
    elif not published.latest_moved:
        print(
            f"\nThe run {result.name} succeeded, but latest.json still points to {published.latest_run_id}:"
            " a run with newer data (or the quality gate) kept it there."
        )
    run_id = str((result.output or {}).get("run_id", result.name))
    print_summary(out, run_id, progress.seconds, result.seconds)
    return 0


def quality_line(manifest: dict[str, Any]) -> str | None:
    """The run's holdout figures, as the summary prints them; None when the run was not measured."""
    quality = manifest.get("quality")
    if not quality:
        return None
    from .algorithms import PRODUCT_ALGORITHMS  # imports Surprise: only once a run is summarised

    k = quality["k"]
    model_q, popular = quality["model"], quality["popularity"]
    # the product's own models rank, they do not predict stars: their RMSE means nothing
    rmse = "" if manifest["model"]["algorithm"] in PRODUCT_ALGORITHMS else f" RMSE {model_q['rmse']:.3f};"
    return (
        f"  quality on a {quality['split']['fraction']:.0%} holdout ({quality['split']['method']}):"
        f" NDCG@{k} {model_q[f'ndcg@{k}']:.3f} (popularity {popular[f'ndcg@{k}']:.3f}),"
        f"{rmse} gate: {manifest['gate']['decision']}"
    )


def similar_quality_line(manifest: dict[str, Any]) -> str | None:
    """The holdout's figures for the similar items, beside the popularity list's; None when the
    run was not measured or its manifest predates them."""
    similar = (manifest.get("quality") or {}).get("similar_items")
    if not similar:
        return None
    k, model_q, popular = similar["k"], similar["model"], similar["popularity"]
    return (
        f"  similar items of each user's {similar['recent_items']} latest items ({similar['measure']}):"
        f" hit rate@{k} {model_q['hit_rate']:.3f} (popularity {popular['hit_rate']:.3f}),"
        f" NDCG@{k} {model_q['ndcg']:.3f} (popularity {popular['ndcg']:.3f}),"
        f" {similar['with_list']:.0%} of users with a list"
    )


def print_summary(out: Path, run_id: str, state_seconds: dict[str, float], wall: float) -> None:
    """This run's figures (its own manifest), then lists as an app server reads them (latest.json)."""
    manifest = json.loads((out / "runs" / run_id / "manifest.json").read_text())
    model = manifest["model"]
    print(f"\nRun {manifest['run_id']} {manifest.get('status', 'published')} in {wall:.1f}s")
    print(
        f"  ratings: {manifest['dataset']['rows']:,}   users: {model['users']:,}"
        f"   items: {model['items']:,}   shards: {len(manifest['shards'])}"
        f"   algorithm: {model['algorithm']}"
        f" ({'scored pair by pair' if model['kind'] == 'refit' else 'vectorised kernel'})"
    )
    print("  seconds per step (state, as the engine saw it; inside the Lambda):")
    timings = manifest["timings"]
    inner = {
        "Extract": timings["extract_seconds"],
        "Train": timings["train_seconds"],
        "Recommend": timings["predict_seconds_max_shard"],
        "Merge": timings["merge_seconds"],
    }
    for name, seconds in state_seconds.items():
        own = next((v for k, v in inner.items() if name.startswith(k)), None)
        extra = (
            f"  ({own:.2f}s" + (" slowest shard)" if name.startswith("Recommend") else ")")
            if own is not None
            else ""
        )
        print(f"    {name:<42} {seconds:6.2f}{extra}")
    choice = manifest["model"].get("choice")
    if choice:
        print(
            f"  algorithm auto chose {choice['chosen']} (NDCG@{manifest['top_n']} on the holdout):"
            f" {_candidates(choice)}"
        )
    for line in (quality_line(manifest), similar_quality_line(manifest)):
        if line is not None:
            print(line)
    for line in floor_lines(manifest):
        print(line)
    if not (out / "latest.json").is_file():
        print(f"\nNo run is published in {out.resolve()} yet: app servers find no latest.json.")
        return
    recs = Recommendations.open(out)
    shown = [s["first_user"] for s in manifest["shards"][:3]]
    print(f"\nA few users' recommendations (run {recs.manifest['run_id']}, the one latest.json points to):")
    for user in shown:
        answer = recs.for_user(user, n=5)
        print(f"  user {user}: " + ", ".join(f"{i} ({s:.2f})" for i, s in zip(answer.items, answer.scores)))
    unknown = recs.for_user("someone-new", n=5)
    print("  a new user (fallback): " + ", ".join(unknown.items))
    print(f"\nOutput folder: {out.resolve()}")
    print(f"Try: recommender recommend {shown[0]} --from {out}")


def floor_lines(manifest: dict[str, Any]) -> list[str]:
    """What the summary says about the popularity floor: loud when the run ranks below the
    most-popular list, and that it is unknown when the run was not measured."""
    quality = manifest.get("quality")
    if not quality:
        return [
            "  quality not measured (evaluate: false, or too few ratings to hold any out): whether"
            " these lists beat the most-popular list is unknown"
        ]
    against = quality.get("against_popularity")
    if not quality.get("below_popularity") or not against:
        return []
    ratio = f" ({against['ratio']:.2f}x)" if against["ratio"] is not None else ""
    holds = manifest["gate"].get("on_below_popularity") == "hold"
    if manifest.get("status") == "held":
        outcome = "HELD by the quality gate" + (" (quality_gate_below_popularity: hold)" if holds else "")
    elif holds:
        outcome = "PUBLISHED: force_publish overrode quality_gate_below_popularity: hold"
    else:
        outcome = 'PUBLISHED all the same (quality_gate_below_popularity: "hold" would hold it)'
    return [
        "",
        f"  !!! BELOW POPULARITY: {against['metric']} {against['model']:.3f} against the most-popular"
        f" list's {against['popularity']:.3f}{ratio}: these lists rank worse than the fallback list.",
        f"  !!! {outcome}. The README's section Choosing an algorithm compares the ones that rank.",
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from .sample_data import SyntheticSpec, calibrated, load_ratings, synthetic_ratings

    run_input = run_input_from_args(args, DEMO_SOURCE)
    if "users_per_shard" not in run_input:
        run_input["users_per_shard"] = max(1, -(-args.users // 4))  # four shards by default
    config = RunConfig.from_input(run_input)
    with ExitStack() as stack:
        url = _database(stack, args)
        spec = SyntheticSpec(
            users=args.users,
            items=args.items,
            ratings_per_user=args.ratings_per_user,
            seed=args.seed,
            **calibrated(args.items),
        )
        print(
            f"Generating synthetic ratings: {spec.users:,} users x {spec.items:,} items,"
            f" ~{spec.ratings_per_user} ratings per user (seed {spec.seed})"
        )
        started = time.monotonic()
        with closing(_writable(url)) as conn:
            rows = load_ratings(conn, synthetic_ratings(spec), config.source)
        seconds = time.monotonic() - started
        print(f"  loaded {rows:,} ratings into table {config.source.table!r} in {seconds:.1f}s")
        return execute(url, run_input, args.out, args.quiet, args.layer)


def cmd_run(args: argparse.Namespace) -> int:
    from .sample_data import load_ratings, read_movielens

    source_defaults: dict[str, Any] = {"timestamp_column": "rated_at"} if args.movielens else {}
    run_input = run_input_from_args(args, source_defaults)
    config = RunConfig.from_input(run_input)
    with ExitStack() as stack:
        url = _database(stack, args)
        if args.movielens:
            print(f"Loading {args.movielens} into table {config.source.table!r} (replacing it)")
            with closing(_writable(url)) as conn:
                rows = load_ratings(conn, read_movielens(args.movielens), config.source)
            print(f"  loaded {rows:,} ratings")
        return execute(url, run_input, args.out, args.quiet, args.layer)


def cmd_recommend(args: argparse.Namespace) -> int:
    recs = Recommendations.open(args.source)
    if args.rated:
        ratings = {}
        for item in args.rated:
            key, sep, value = item.rpartition("=")
            try:
                rating = float(value)
            except ValueError:
                rating = math.nan
            if not sep or not key or not math.isfinite(rating):
                raise ConfigError(f"--rated {item!r} is not ITEM=RATING, RATING a finite number")
            ratings[key] = rating
        answer = recs.for_ratings(ratings, n=args.n, exclude=args.exclude)
        print(f"for these {len(ratings)} rating(s), folded into run {answer.run_id}:")
    else:
        if args.user_id is None:
            raise ConfigError("give a USER_ID, or --rated ITEM=RATING ...")
        answer = recs.for_user(args.user_id, n=args.n, exclude=args.exclude)
        which = "personal recommendations" if answer.personal else "unknown user: fallback list"
        print(f"user {answer.user} ({which}, run {answer.run_id}):")
    for rank, (item, score) in enumerate(zip(answer.items, answer.scores), start=1):
        print(f"  {rank:3d}. {item}  {score:.3f}")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    """An item's similar items, printed as `recommend` prints a list; an empty answer says why, and
    exits 0 as a fallback answer does: it is an answer, not an error."""
    recs = Recommendations.open(args.source)
    answer = recs.similar_to(args.item_id, n=args.n, exclude=args.exclude)
    section = recs.manifest.get("similar") or {}
    which = {
        "similar": f"similar items by {section.get('measure')}",
        "no-list": f"no list: fewer ratings than {section.get('min_support')} or no item of positive"
        " similarity",
        "unknown-item": "unknown item: the run does not know it",
        "not-published": "no similar items: the run was published before they were",
    }[answer.status]
    print(f"item {answer.item} ({which}, run {answer.run_id})" + (":" if answer.status == "similar" else ""))
    for rank, (item, score) in enumerate(zip(answer.items, answer.scores), start=1):
        print(f"  {rank:3d}. {item}  {score:.3f}")
    return 0


def _check_writable(path: Path, option: str) -> None:
    """Refuse an output file that cannot be written before the work that fills it, not after."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder, not a file")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} cannot be written")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import report as evaluation_report
    from .sample_data import SyntheticSpec, calibrated, read_movielens, synthetic_ratings
    from .snapshot import ratings_from_rows
    from .training import effective_params, rating_scale_of

    algorithms = list(args.algorithms or evaluation_report.DEFAULT_ALGORITHMS)
    for name in algorithms:
        effective_params(name, {})  # an unknown name fails here, before any work
    if args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, not {args.folds}")
    if args.top_n < 1:
        raise ConfigError(f"--top-n must be at least 1, not {args.top_n}")
    if not 0.0 < args.fraction < 1.0:
        raise ConfigError(f"--fraction must be between 0 and 1 (exclusive), not {args.fraction}")
    if args.json:
        _check_writable(args.json, "--json")
    if args.movielens:
        source = str(args.movielens)
        ratings = ratings_from_rows(read_movielens(args.movielens))
    else:
        spec = SyntheticSpec(
            users=args.users,
            items=args.items,
            ratings_per_user=args.ratings_per_user,
            seed=args.seed,
            **calibrated(args.items),  # the data demo and load generate
        )
        source = f"synthetic ({spec.users} users x {spec.items} items, seed {spec.seed})"
        ratings = ratings_from_rows(synthetic_ratings(spec))
    configured = (args.rating_scale[0], args.rating_scale[1]) if args.rating_scale else None
    scale = rating_scale_of(ratings, configured)
    report = evaluation_report.run_report(
        ratings,
        algorithms,
        source=source,
        rating_scale=scale,
        folds=args.folds,
        k=args.top_n,
        fraction=args.fraction,
        seed=args.seed,
        cross_validation=not args.top_n_only,
        top_n=not args.cv_only,
        progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
    )
    print(evaluation_report.format_report(report))
    if args.json:
        try:
            args.json.write_text(strict_json.dumps(report, what=str(args.json), indent=2) + "\n")
        except OSError as error:
            raise ConfigError(f"cannot write the report to {args.json}: {error.strerror}") from None
        print(f"\nReport written to {args.json}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from .sample_data import (
        SyntheticSpec,
        calibrated,
        load_ratings,
        load_synthetic,
        ratings_table,
        read_movielens,
    )

    source = SourceTable.from_input(
        {
            "table": args.table,
            "schema": args.schema,
            "user_column": args.user_column,
            "item_column": args.item_column,
            "rating_column": args.rating_column,
            "timestamp_column": args.timestamp_column,
        }
    )
    if not args.database_url and args.data_dir is None:
        raise ConfigError(
            "where to? give --database-url URL (or set DATABASE_URL), or --data-dir DIR for an embedded"
            " PostgreSQL whose data stays in DIR"
        )
    shape = {"--users": args.users, "--items": args.items, "--ratings": args.ratings}
    shape |= {"--ratings-per-user": args.ratings_per_user, "--factors": args.factors, "--seed": args.seed}
    if args.movielens:
        given = [name for name, value in shape.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: for --synthetic only, not --movielens")
        spec = None
    else:
        users = ML25M_SHAPE[0] if args.users is None else args.users
        items = ML25M_SHAPE[1] if args.items is None else args.items
        # by default MovieLens 25M's ratings per user: 25,000,000 for its 162,000 users
        total = round(ML25M_SHAPE[2] * users / ML25M_SHAPE[0])
        factors = 8 if args.factors is None else args.factors
        seed = 0 if args.seed is None else args.seed
        if args.ratings_per_user is not None:
            spec = SyntheticSpec(users, items, args.ratings_per_user, factors, seed, **calibrated(items))
        else:
            spec = SyntheticSpec.with_total(
                users,
                items,
                total if args.ratings is None else args.ratings,
                factors,
                seed,
                **calibrated(items),
            )
    name = f"{source.schema}.{source.table}" if source.schema else source.table
    with ExitStack() as stack:
        url = _database(stack, args)
        with closing(_writable(url)) as conn:
            started = time.monotonic()
            if spec is not None:
                expected = (
                    f"{spec.total_ratings:,}"
                    if spec.total_ratings is not None
                    else f"~{spec.users * spec.ratings_per_user:,}"
                )
                print(
                    f"Generating and loading synthetic ratings into table {name!r} (replacing it):"
                    f" {spec.users:,} users x {spec.items:,} items, {expected} ratings (seed {spec.seed})",
                    flush=True,
                )
                rows = load_synthetic(conn, spec, source)
            else:
                print(f"Loading {args.movielens} into table {name!r} (replacing it)", flush=True)
                rows = load_ratings(conn, read_movielens(args.movielens), source)
            seconds = time.monotonic() - started
            with conn.cursor() as cursor:
                qualified = ratings_table(source).as_string(conn)
                cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))", (qualified,))
                size = cursor.fetchone()[0]
    rate = rows / max(seconds, 1e-9)
    print(f"  loaded {rows:,} ratings in {seconds:.1f}s ({rate:,.0f} rows/s); table size {size}")
    where = f"--data-dir {args.data_dir}" if args.data_dir is not None else "--database-url URL"
    options = "" if source.table == "ratings" and not source.schema else f" --table {source.table}"
    options += f" --schema {source.schema}" if source.schema else ""
    for flag, value, default in (
        ("--user-column", source.user_column, "user_id"),
        ("--item-column", source.item_column, "item_id"),
        ("--rating-column", source.rating_column, "rating"),
    ):
        options += f" {flag} {value}" if value != default else ""
    if source.timestamp_column:
        options += f" --timestamp-column {source.timestamp_column}"
    print(f"Next: recommender run {where}{options}")
    return 0


def _database(stack: ExitStack, args: argparse.Namespace) -> str:
    """The URL to use: an embedded server on --data-dir, else --database-url, else an embedded
    server in a temporary folder. An embedded server stops when the command ends."""
    if getattr(args, "data_dir", None) is not None:
        return _embedded(stack, args.data_dir)
    if args.database_url:
        url: str = args.database_url
        check_url(url)  # a malformed URL fails now, before a server or the engine starts
        return url
    return _embedded(stack)


def _embedded(stack: ExitStack, data_dir: Path | None = None) -> str:
    from .local import embedded_postgres

    if data_dir is None:
        print("No database URL given: starting an embedded PostgreSQL (pgserver)")
    else:
        data_dir = data_dir.expanduser().resolve()
        print(f"Starting an embedded PostgreSQL (pgserver) with its data in {data_dir}")
    url: str = stack.enter_context(embedded_postgres(data_dir))
    return url


def _writable(url: str) -> Any:
    """A connection that may write (load replaces the table), made as every connection is."""
    return connect(url, "recommender-load", readonly=False)


def _add_reading_arguments(parser: argparse.ArgumentParser) -> None:
    """`--from` and `-n`, the same for every command that reads published output."""
    parser.add_argument(
        "--from",
        dest="source",
        default=str(DEFAULT_OUT),
        help=f"output folder or s3://bucket/prefix (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "-n", type=_count, default=None, help="how many items, 1 or more (default: all published)"
    )


def _count(text: str) -> int | None:
    """`-n` as the client checks it (`client.check_count`), refused by argparse with its reason."""
    try:
        return check_count(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"n must be a whole number >= 1 (leave -n out for every published item), not {text!r}"
        ) from None


def cmd_smoke(args: argparse.Namespace) -> int:
    import boto3

    from .smoke import smoke

    session = boto3.session.Session(region_name=args.region)
    run_input = _input_file(args.input) if args.input else None
    return smoke(
        session.client("cloudformation"),
        session.client("stepfunctions"),
        session.client("s3"),
        args.stack,
        run_input,
        timeout_seconds=args.timeout,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recommender", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="synthetic ratings in an embedded PostgreSQL, run end to end")
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--items", type=int, default=1000)
    demo.add_argument("--ratings-per-user", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    _add_run_options(demo)
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser("run", help="run end to end on your own PostgreSQL table")
    run.add_argument("--movielens", type=Path, help="load a MovieLens folder into the table first")
    _add_run_options(run)
    run.set_defaults(handler=cmd_run)

    _add_load_command(commands)

    rec = commands.add_parser("recommend", help="a user's recommendations from published output")
    rec.add_argument("user_id", nargs="?", help="a user id (or use --rated)")
    rec.add_argument(
        "--rated",
        nargs="+",
        metavar="ITEM=RATING",
        help="recommend for these ratings instead, folded into the published model",
    )
    rec.add_argument("--exclude", nargs="+", default=[], metavar="ITEM", help="items never to recommend")
    _add_reading_arguments(rec)
    rec.set_defaults(handler=cmd_recommend)

    sim = commands.add_parser("similar", help="an item's similar items from published output")
    sim.add_argument("item_id", help="an item id")
    sim.add_argument("--exclude", nargs="+", default=[], metavar="ITEM", help="items never to list")
    _add_reading_arguments(sim)
    sim.set_defaults(handler=cmd_similar)

    _add_evaluate_command(commands)

    check = commands.add_parser(
        "smoke",
        help="after `sam deploy`: run the deployed state machine once and read what it published",
        description="Reads the stack's outputs, starts an execution with a small input (no quality"
        " evaluation, top 5), follows it state by state, then prints why it failed (the failed"
        " state's error and the run's failure.json) or reads latest.json through the client as an"
        " app server would. Uses your AWS credentials and region. Exit code 0 when the run published.",
    )
    check.add_argument("--stack", required=True, help="the stack's name (samconfig.toml: recommender)")
    check.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    check.add_argument("--input", type=Path, help="a JSON file with the state machine input instead")
    check.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    check.set_defaults(handler=cmd_smoke)
    return parser


def _candidates(choice: dict[str, Any]) -> str:
    """Each candidate of algorithm auto with its figure, or why it has none."""
    parts = []
    for candidate in choice["candidates"]:
        if candidate.get("ndcg") is not None:
            parts.append(f"{candidate['algorithm']} {candidate['ndcg']:.3f} ({candidate['seconds']:.1f}s)")
        else:
            parts.append(
                f"{candidate['algorithm']} not measured: {candidate.get('error') or candidate.get('skipped')}"
            )
    return ", ".join(parts)


def _add_load_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load",
        help="load ratings into a PostgreSQL table with COPY: synthetic at any scale, or MovieLens",
        description="(Re)create a ratings table (user and item text, rating real, timestamp timestamptz)"
        " and fill it with one streamed COPY. --synthetic generates ratings with latent tastes,"
        " long-tail popularity and log-normal activity, by blocks of users, so memory stays small at"
        " any size; by default MovieLens 25M's shape: 162,000 users x 59,000 items, 25,000,000"
        " ratings. Then run the workflow on it: `recommender run --data-dir DIR"
        " --timestamp-column rated_at` (or --database-url).",
    )
    data = load.add_mutually_exclusive_group(required=True)
    data.add_argument("--synthetic", action="store_true", help="synthetic ratings")
    data.add_argument(
        "--movielens", type=Path, metavar="DIR", help="a MovieLens folder (ratings.csv or u.data)"
    )
    load.add_argument("--users", type=int, help=f"--synthetic: users (default {ML25M_SHAPE[0]:,})")
    load.add_argument("--items", type=int, help=f"--synthetic: items (default {ML25M_SHAPE[1]:,})")
    total = load.add_mutually_exclusive_group()
    total.add_argument(
        "--ratings",
        type=int,
        help="--synthetic: exactly this many ratings (default: MovieLens 25M's 154.3 per user,"
        f" {ML25M_SHAPE[2]:,} for {ML25M_SHAPE[0]:,} users)",
    )
    total.add_argument("--ratings-per-user", type=int, help="--synthetic: a mean per user instead of a total")
    load.add_argument("--factors", type=int, help="--synthetic: latent factors (default 8)")
    load.add_argument("--seed", type=int, help="--synthetic: seed (default 0)")
    _add_database_options(load, "(default: $DATABASE_URL)")
    table = load.add_argument_group("the table (it is replaced)")
    table.add_argument("--table", default="ratings")
    table.add_argument("--schema")
    table.add_argument("--user-column", default="user_id")
    table.add_argument("--item-column", default="item_id")
    table.add_argument("--rating-column", default="rating")
    table.add_argument("--timestamp-column", default="rated_at", help="(default rated_at)")
    load.set_defaults(handler=cmd_load)


def _add_evaluate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = commands.add_parser(
        "evaluate",
        help="compare algorithms offline: Surprise's cross-validation and a top-N hold-out",
        description="Two protocols on the same ratings. Cross-validation (Surprise's benchmark):"
        " KFold(folds, random_state=seed, shuffle=True), default parameters, mean RMSE and MAE."
        " Top-N: each user's latest ratings held out (by timestamp), the model's top-N unseen"
        " items scored against them, next to a most-popular baseline. Tables are Markdown.",
    )
    data = ev.add_mutually_exclusive_group()
    data.add_argument("--movielens", type=Path, help="a MovieLens folder (ratings.csv or u.data)")
    data.add_argument("--synthetic", action="store_true", help="synthetic ratings (the default)")
    ev.add_argument(
        "--algorithms",
        nargs="+",
        metavar="NAME",
        help="Surprise algorithm names or module:Class (default: every algorithm but SVDpp)",
    )
    ev.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    protocol = ev.add_mutually_exclusive_group()
    protocol.add_argument("--top-n-only", action="store_true", help="skip the cross-validation")
    protocol.add_argument("--cv-only", action="store_true", help="skip the top-N hold-out")
    ev.add_argument("--top-n", type=int, default=10, help="k of the top-N metrics (default 10)")
    ev.add_argument(
        "--fraction", type=float, default=0.2, help="share of each user's ratings held out (default 0.2)"
    )
    ev.add_argument(
        "--seed", type=int, default=0, help="seed of the folds, of a random hold-out and of --synthetic"
    )
    ev.add_argument("--rating-scale", type=float, nargs=2, metavar=("LOW", "HIGH"))
    ev.add_argument("--users", type=int, default=2000, help="--synthetic: users (default 2000)")
    ev.add_argument("--items", type=int, default=1000, help="--synthetic: items (default 1000)")
    ev.add_argument("--ratings-per-user", type=int, default=40, help="--synthetic: mean (default 40)")
    ev.add_argument("--json", type=Path, metavar="FILE", help="also write the full report as JSON")
    ev.set_defaults(handler=cmd_evaluate)


def main(argv: list[str] | None = None) -> int:
    """Run a command; the product's own errors (a wrong option or input, unusable data, an output
    that cannot be read) end it with one line on stderr, anything else with its traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except DatabaseUnavailableError as error:  # its message is redacted (database.connect)
        print(f"recommender: {error}", file=sys.stderr)
        return 1
    except RecommenderError as error:
        print(f"recommender: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
