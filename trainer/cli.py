"""`trainer`: train, export and evaluate the models the pricing server serves.

    trainer train --model pinn [--epochs N] [--seed S] [--output DIR] [--quick] [--resume]
    trainer train --model mamba --symbols AAPL,MSFT --data DIR [--epochs N] [--seed S] [--quick]
    trainer evaluate --model pinn [--output DIR] [--version V] [--points N]

Exit status: 0 done, 2 bad arguments or data, 3 training diverged with no usable model,
4 export failed, 5 out of memory at the smallest batch, 6 some symbols failed (the others
were promoted), 130 interrupted (rerun with --resume).
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import sys
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


CHECKPOINT_FILE = "training-checkpoint.npz"


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
        "--symbols", help="mamba: comma-separated symbols, each read from DATA/<SYMBOL>.csv"
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
        "--eval-points",
        type=positive_int,
        help="random points for the accuracy table (default 1,000,000; quick 100,000)",
    )

    evaluate = commands.add_parser(
        "evaluate", help="measure a stored model and record it in its meta.json"
    )
    evaluate.add_argument(
        "--model", required=True, choices=["pinn"], help="which model to evaluate"
    )
    evaluate.add_argument(
        "--output", type=Path, default=Path("models"), help="models folder (default models/)"
    )
    evaluate.add_argument("--version", help="version to evaluate (default: the promoted one)")
    evaluate.add_argument(
        "--points", type=positive_int, default=1_000_000, help="random points (default 1,000,000)"
    )
    return parser


def train_mamba(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    from shared.artifact_store import ArtifactStore
    from trainer.mamba.data import DataError, read_prices
    from trainer.mamba.export import MambaExportError
    from trainer.mamba.publish import publish
    from trainer.mamba.train import MambaConfig, train_symbol

    if not args.symbols or args.data is None:
        parser.error("--model mamba needs --symbols and --data")
    if args.resume or args.eval_points:
        parser.error("--resume and --eval-points apply to --model pinn only")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    overrides = {"seed": args.seed} | ({"epochs": args.epochs} if args.epochs else {})
    config = MambaConfig.quick(**overrides) if args.quick else MambaConfig(**overrides)
    store, histories, failed = ArtifactStore(args.output), {}, {}
    for symbol in symbols:  # one bad file fails its symbol, not the run
        try:
            histories[symbol] = read_prices(args.data / f"{symbol}.csv", symbol)
        except DataError as error:
            failed[symbol] = str(error)
            print(f"{symbol}: failed: --data: {error}", file=sys.stderr)
    if not histories:
        parser.error(f"--data: no usable data for {', '.join(symbols)}")
    for symbol, history in histories.items():
        try:
            result = train_symbol(history.close, config)
            written = publish(store, symbol, result, config, len(history))
        except (ValueError, FloatingPointError, MambaExportError) as error:
            failed[symbol] = str(error)
            print(f"{symbol}: failed: {error}", file=sys.stderr)
            continue
        qlike = ", ".join(
            f"{k} {v:.3f}" for k, v in result.validation.items() if k.startswith("qlike")
        )
        print(f"{symbol}: promoted mamba/{symbol}/{written.version} after {result.epochs_run} epochs "
              f"({result.seconds:.1f} s); validation QLIKE {qlike}")  # fmt: skip
    trained = len(symbols) - len(failed)
    print(
        f"{trained} of {len(symbols)} symbols trained"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return ExitCode.SOME_SYMBOLS_FAILED if failed else ExitCode.OK


def train_pinn(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExitCode:
    from shared.artifact_store import ArtifactStore
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

    overrides = {"seed": args.seed} | ({"epochs": args.epochs} if args.epochs else {})
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


def evaluate_pinn(args: argparse.Namespace) -> ExitCode:
    from shared.artifact_store import ArtifactStore
    from trainer.pinn import publish
    from trainer.pinn.evaluate import accuracy, as_meta, format_table

    store = ArtifactStore(args.output)
    artifact = store.load(publish.KIND, publish.NAME, args.version)
    table = accuracy(artifact.model, args.points)
    print(
        f"{publish.KIND}/{publish.NAME}/{artifact.version}, onnxruntime float32 vs float64 Black-Scholes:"
    )
    print(format_table(table))
    store.update_meta(
        publish.KIND,
        publish.NAME,
        artifact.version,
        {"accuracy": {"evaluated_points": args.points, "metrics": as_meta(table)}},
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
        if args.symbols or args.data:
            parser.error("--symbols and --data apply to --model mamba only")
        return train_pinn(args, parser)
    return evaluate_pinn(args)


if __name__ == "__main__":
    sys.exit(main())
