"""`trainer`: train, export and evaluate the models the pricing server serves.

    trainer train --model pinn [--epochs N] [--seed S] [--output DIR] [--quick] [--resume]
    trainer train --model mamba --symbols AAPL,MSFT --data DIR [--workers N] [--epochs N]
                  [--members K] [--seed S] [--quick] [--resume]
    trainer evaluate --model pinn [--output DIR] [--version V] [--points N]
    trainer evaluate --model mamba --symbols AAPL,MSFT --data DIR [--synthetic garch]
                     [--report FILE.json] [--refit-days N] [--members K] [--seed S] [--quick]

Exit status: 0 done, 2 bad arguments or data, 3 training diverged with no usable model,
4 export failed, 5 out of memory at the smallest batch, 6 some symbols failed (the others
were promoted or evaluated), 130 interrupted (rerun with --resume).
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path


class ExitCode(enum.IntEnum):
    """Exit statuses of `trainer`, one per way it can end."""

    OK = 0
    BAD_ARGUMENTS = 2  # argparse's own
    DIVERGED = 3
    EXPORT_FAILED = 4
    OUT_OF_MEMORY = 5
    SOME_SYMBOLS_FAILED = 6
    INTERRUPTED = 130  # resumable; 128 + SIGINT, as shells report Ctrl-C


# The same for train and evaluate: what is evaluated is what is published.
MEMBERS_HELP = (
    "mamba: networks from seeds S, S+1, ... whose mean is the forecaster (default 3; quick 1)"
)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, export, evaluate, store and promote a model")
    train.add_argument(
        "--model", required=True, choices=["pinn", "mamba"], help="which model to train"
    )
    train.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs (pinn: L-BFGS, default 12, quick 3; mamba: at most 30, quick 2)",
    )
    train.add_argument(
        "--symbols",
        type=symbol_list,
        help="mamba: comma-separated symbols, each read from DATA/<SYMBOL>.csv",
    )
    train.add_argument(
        "--data", type=Path, help="mamba: folder of Date,Open,High,Low,Close,Volume CSVs"
    )
    train.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of data and weights (default 0)"
    )
    train.add_argument(
        "--output", type=Path, default=Path("models"), help="models folder (default models/)"
    )
    train.add_argument(
        "--quick", action="store_true", help="a small model in well under a minute, for tests"
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="mamba: symbols trained at once, each in its own process (default 1)",
    )
    train.add_argument("--members", type=positive_int, help=MEMBERS_HELP)
    train.add_argument(
        "--eval-points",
        type=positive_int,
        help="random points for the accuracy table (default 1,000,000; quick 100,000)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="pinn: measure a stored model and record it in its meta.json; "
        "mamba: walk-forward comparison with EWMA, GARCH(1,1) and HAR-RV",
    )
    evaluate.add_argument(
        "--model", required=True, choices=["pinn", "mamba"], help="which model to evaluate"
    )
    evaluate.add_argument(
        "--output", type=Path, default=Path("models"), help="pinn: models folder (default models/)"
    )
    evaluate.add_argument("--version", help="pinn: version to evaluate (default: the promoted one)")
    evaluate.add_argument(
        "--points", type=positive_int, help="pinn: random points (default 1,000,000)"
    )
    evaluate.add_argument(
        "--symbols", type=symbol_list, help="mamba: comma-separated symbols, each DATA/<SYMBOL>.csv"
    )
    evaluate.add_argument(
        "--data", type=Path, help="mamba: folder of Date,Open,High,Low,Close,Volume CSVs"
    )
    evaluate.add_argument(
        "--synthetic",
        choices=["garch"],
        help="mamba: also evaluate a generated GARCH(1,1) series (3,270 days; 1,000 with "
        "--quick), scored against the true process's forecast as well",
    )
    evaluate.add_argument(
        "--report",
        type=Path,
        help="mamba: JSON file to write, the plot beside it as .png "
        "(default: evaluation.json in --data, or in the current folder)",
    )
    evaluate.add_argument(
        "--refit-days",
        type=positive_int,
        help="mamba: decision days between refits, each block forecast out of sample (default 252)",
    )
    evaluate.add_argument("--members", type=positive_int, help=MEMBERS_HELP)
    evaluate.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="mamba: seed of weights and synthetic data (default 0)",
    )
    evaluate.add_argument(
        "--quick", action="store_true", help="mamba: a small model, for smoke tests"
    )
    return parser


def config_overrides(**flags: object) -> dict[str, object]:
    """The flags that were given, to override a config's defaults with."""
    return {name: value for name, value in flags.items() if value is not None}


def symbol_list(text: str) -> list[str]:
    """--symbols A,B,...: each once, in order."""
    symbols = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not symbols:
        raise argparse.ArgumentTypeError(f"no symbol in {text!r}")
    return symbols


def train_mamba(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    from trainer.mamba.data import read_symbols
    from trainer.mamba.jobs import (
        FAILED,
        INTERRUPTED,
        OK,
        Outcome,
        run_in_processes,
        train_and_publish,
    )
    from trainer.mamba.train import MambaConfig
    from trainer.safe_training import interrupt_guard

    if not args.symbols or args.data is None:
        parser.error("--model mamba needs --symbols and --data")
    if args.eval_points:
        parser.error("--eval-points applies to --model pinn only")
    if not args.data.is_dir():
        parser.error(f"--data: {args.data} is not a folder")
    overrides = {"seed": args.seed} | config_overrides(epochs=args.epochs, members=args.members)
    config = MambaConfig.quick(**overrides) if args.quick else MambaConfig(**overrides)
    # Read here, before any worker starts: a run where no file is usable is a usage error.
    histories, unreadable = read_symbols(args.data, args.symbols)
    if not histories:
        parser.error("--data: no usable data: " + "; ".join(unreadable.values()))
    jobs = [
        (symbol, history, args.output, config, args.resume) for symbol, history in histories.items()
    ]
    if args.workers > 1:
        # The workers get Ctrl-C themselves (same process group); this process waits for them.
        with interrupt_guard():
            outcomes = run_in_processes(train_and_publish, jobs, args.workers)
    else:
        outcomes = [train_and_publish(*job) for job in jobs]
    outcomes += [
        Outcome(symbol, FAILED, f"--data: {error}") for symbol, error in unreadable.items()
    ]
    for outcome in outcomes:
        print(f"{outcome.symbol}: {outcome.status}: {outcome.message}",
              file=sys.stdout if outcome.status == OK else sys.stderr)  # fmt: skip
    failed = [o.symbol for o in outcomes if o.status == FAILED]
    interrupted = [o.symbol for o in outcomes if o.status == INTERRUPTED]
    print(
        f"{len(outcomes) - len(failed) - len(interrupted)} of {len(outcomes)} symbols trained"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; interrupted: {', '.join(interrupted)}" if interrupted else "")
    )
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.SOME_SYMBOLS_FAILED if failed else ExitCode.OK


def train_pinn(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    from shared.artifact_store import CHECKPOINT_FILE, ArtifactStore
    from trainer.pinn import publish
    from trainer.pinn.evaluate import format_table
    from trainer.pinn.export import ExportError
    from trainer.pinn.train import TrainConfig, train
    from trainer.safe_training import (
        OutOfMemory,
        TrainingDiverged,
        TrainingInterrupted,
        interrupt_guard,
    )

    overrides = {"seed": args.seed} | config_overrides(epochs=args.epochs)
    config = TrainConfig.quick(**overrides) if args.quick else TrainConfig(**overrides)
    eval_points = args.eval_points or (100_000 if args.quick else 1_000_000)
    store = ArtifactStore(args.output)
    checkpoint = store.model_dir(publish.KIND, publish.NAME) / CHECKPOINT_FILE
    if args.resume and not checkpoint.exists():
        parser.error(f"--resume: no checkpoint at {checkpoint}")

    with interrupt_guard() as interrupt:
        try:
            result = train(config, checkpoint, interrupt, resume=args.resume)
        except TrainingInterrupted as stop:
            print(
                f"interrupted ({stop}); checkpoint at {checkpoint}: rerun with --resume",
                file=sys.stderr,
            )
            return ExitCode.INTERRUPTED
        except TrainingDiverged as error:
            print(f"training diverged: {error}", file=sys.stderr)
            return ExitCode.DIVERGED
        except OutOfMemory as error:
            print(f"training failed: {error}", file=sys.stderr)
            return ExitCode.OUT_OF_MEMORY
    print(f"trained in {result.seconds:.1f} s; exporting and evaluating on {eval_points:,} points")
    try:
        written, table = publish.publish(store, result, config, eval_points)
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return ExitCode.EXPORT_FAILED
    checkpoint.unlink(missing_ok=True)
    print(format_table(table))
    print(f"promoted {publish.KIND}/{publish.NAME}/{written.version} in {args.output}")
    return ExitCode.OK


def evaluate_mamba(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    if given := [flag for flag in ("--version", "--points") if getattr(args, flag[2:])]:
        parser.error(f"{', '.join(given)} apply to --model pinn only")
    if not args.symbols and not args.synthetic:
        parser.error("--model mamba needs --symbols and --data, or --synthetic garch")
    if args.symbols and args.data is None:
        parser.error("--symbols needs --data, the folder of <SYMBOL>.csv files")
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data: {args.data} is not a folder")
    # Only now TensorFlow: a usage error should not wait seconds for it.
    from trainer.mamba.data import read_symbols
    from trainer.mamba.evaluate import (
        SYNTHETIC_DAYS,
        SYNTHETIC_DAYS_QUICK,
        EvaluationConfig,
        synthetic_garch_forecasts,
        walk_forward_forecasts,
    )
    from trainer.mamba.report import write_report

    overrides = config_overrides(refit_days=args.refit_days)
    config = EvaluationConfig.quick(**overrides) if args.quick else EvaluationConfig(**overrides)
    mamba = replace(config.mamba, seed=args.seed, **config_overrides(members=args.members))
    config = replace(config, mamba=mamba)
    report = args.report or (args.data or Path()) / "evaluation.json"
    histories, failed = read_symbols(args.data, args.symbols) if args.symbols else ({}, {})
    for symbol, error in failed.items():
        print(f"{symbol}: failed: --data: {error}", file=sys.stderr)
    if args.symbols and not histories and not args.synthetic:
        parser.error(f"--data: no usable data for {', '.join(args.symbols)}")
    forecasts = []
    for symbol, history in histories.items():
        try:
            forecasts.append(walk_forward_forecasts(history, config))
        except (ValueError, FloatingPointError) as error:
            failed[symbol] = str(error)
            print(f"{symbol}: failed: {error}", file=sys.stderr)
    if args.synthetic:
        days = SYNTHETIC_DAYS_QUICK if args.quick else SYNTHETIC_DAYS
        forecasts.append(synthetic_garch_forecasts(days, args.seed, config))
    if forecasts:
        table, plot = write_report(forecasts, config, report)
        print(table)
        print(f"wrote {report} and {plot}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return ExitCode.SOME_SYMBOLS_FAILED if failed else ExitCode.OK


def evaluate_pinn(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    from shared.artifact_store import ArtifactStore
    from trainer.pinn import publish
    from trainer.pinn.evaluate import accuracy, as_meta, format_table

    flags = (
        "--symbols",
        "--data",
        "--synthetic",
        "--report",
        "--refit-days",
        "--members",
        "--quick",
    )
    if given := [flag for flag in flags if getattr(args, flag[2:].replace("-", "_"))]:
        parser.error(f"{', '.join(given)} apply to --model mamba only")
    points = args.points or 1_000_000
    store = ArtifactStore(args.output)
    artifact = store.load(publish.KIND, publish.NAME, args.version)
    table = accuracy(artifact.model, points)
    print(
        f"{publish.KIND}/{publish.NAME}/{artifact.version}, onnxruntime float32 vs float64 Black-Scholes:"
    )
    print(format_table(table))
    store.update_meta(
        publish.KIND,
        publish.NAME,
        artifact.version,
        {"accuracy": {"evaluated_points": points, "metrics": as_meta(table)}},
    )
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.model == "mamba":
            return train_mamba(args, parser)
        if args.symbols or args.data or args.workers != 1 or args.members:
            parser.error("--symbols, --data, --workers and --members apply to --model mamba only")
        return train_pinn(args, parser)
    if args.model == "mamba":
        return evaluate_mamba(args, parser)
    return evaluate_pinn(args, parser)


if __name__ == "__main__":
    sys.exit(main())
