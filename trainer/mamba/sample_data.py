"""Real daily prices for demos and tests, from data that ships inside `bokeh-sampledata`.

The series are Quandl WIKI prices (public domain), 2000-03-01 to 2013-03-01 (GOOG from its
2004 listing), read from the installed package: nothing is downloaded. The raw open, high,
low and close are as traded, so AAPL's 2:1 splits of 2000-06-21 and 2005-02-28 would look
like -50% days. Each day's four prices are therefore scaled by that day's adj_close / close,
which gives split- and dividend-adjusted OHLC whose close is the source's adjusted close.
One factor per day keeps High >= Open, Close >= Low. Volume stays in shares as traded.

    python -m trainer.mamba.sample_data --out DIR [--symbols AAPL,MSFT]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from bokeh_sampledata import stocks

from trainer.mamba.data import PriceHistory, write_prices

SAMPLE_SYMBOLS = ("AAPL", "MSFT", "GOOG", "IBM")
_PRICE_KEYS = ("open", "high", "low", "close", "adj_close")


def _adjusted(symbol: str) -> tuple[PriceHistory, int]:
    """The adjusted history and how many raw rows were skipped for a missing or bad value."""
    if symbol not in SAMPLE_SYMBOLS:
        raise ValueError(f"no sample data for {symbol!r}; available: {', '.join(SAMPLE_SYMBOLS)}")
    raw = getattr(stocks, symbol)
    prices = {k: np.array(raw[k], dtype=np.float64) for k in _PRICE_KEYS}
    volume = np.array(raw["volume"], dtype=np.float64)
    # A missing value read as NaN compares False, so it is caught with the non-positive ones.
    good = np.logical_and.reduce([p > 0 for p in prices.values()]) & (volume >= 0)
    factor = prices["adj_close"][good] / prices["close"][good]
    history = PriceHistory(
        symbol=symbol,
        dates=np.array(raw["date"], dtype="datetime64[D]")[good],
        open=prices["open"][good] * factor,
        high=prices["high"][good] * factor,
        low=prices["low"][good] * factor,
        close=prices["close"][good] * factor,
        volume=volume[good],
    )
    return history, int(np.count_nonzero(~good))


def sample_history(symbol: str) -> PriceHistory:
    """Split- and dividend-adjusted daily bars of one of SAMPLE_SYMBOLS."""
    return _adjusted(symbol)[0]


def export_samples(
    out: Path,
    symbols: Sequence[str] = SAMPLE_SYMBOLS,
    report: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write `out/<SYMBOL>.csv` per symbol, in the format `read_prices` reads.

    `report`, when given, receives one line per file: rows, date range, rows skipped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for symbol in symbols:
        history, skipped = _adjusted(symbol)
        path = out / f"{symbol}.csv"
        write_prices(history, path)
        written.append(path)
        if report is not None:
            span = f"{history.dates[0]} to {history.dates[-1]}" if len(history) else "no dates"
            report(f"{path}: {len(history)} rows, {span}, {skipped} raw rows skipped")
    return written


def _symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in symbols if s not in SAMPLE_SYMBOLS]
    if unknown or not symbols:
        raise argparse.ArgumentTypeError(
            f"unknown symbol(s) {', '.join(unknown) or '(none given)'}; "
            f"available: {', '.join(SAMPLE_SYMBOLS)}"
        )
    return symbols


def main(argv: Sequence[str] | None = None) -> int:
    """Export the sample CSVs; exit status 0 done, 2 bad arguments (argparse's own)."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer.mamba.sample_data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write CSVs into")
    parser.add_argument(
        "--symbols",
        type=_symbols,
        default=list(SAMPLE_SYMBOLS),
        help=f"comma-separated subset of {','.join(SAMPLE_SYMBOLS)} (default: all)",
    )
    args = parser.parse_args(argv)
    export_samples(args.out, args.symbols, report=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
