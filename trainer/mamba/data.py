"""Daily price histories: strict CSV reading and atomic CSV writing.

A forecaster trained on a file with a swapped column, an unsorted date or a zero price
learns garbage without failing, so every cell is checked on the way in and the first
problem stops the read with the file, line (the header is line 1) and column named: the
person fixing the file should not have to search for it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from shared.atomic_files import replace_atomically

MIN_ROWS = 300
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
# date.fromisoformat also takes "20000103" and week dates; only YYYY-MM-DD is accepted.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, eq=False)  # eq over arrays would be ambiguous, so identity it is
class PriceHistory:
    """One symbol's daily bars, oldest first; every array has one entry per trading day."""

    symbol: str
    dates: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        if self.dates.dtype != np.dtype("datetime64[D]"):
            raise ValueError(f"dates must be datetime64[D], got {self.dates.dtype}")
        arrays = (self.dates, self.open, self.high, self.low, self.close, self.volume)
        if len({a.shape for a in arrays}) != 1 or self.dates.ndim != 1:
            raise ValueError(f"arrays must be 1-D of one length, got {[a.shape for a in arrays]}")

    def __len__(self) -> int:
        return len(self.dates)


class DataError(ValueError):
    """A price file that cannot be used, with where the problem is."""

    def __init__(
        self, path: Path, message: str, line: int | None = None, column: str | None = None
    ) -> None:
        self.path, self.line, self.column = path, line, column
        where = str(path)
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


def _parse_date(path: Path, line: int, text: str) -> date:
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise DataError(path, f'"{text}" is not a date YYYY-MM-DD', line, "Date") from None


def _parse_number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f'"{text}" is not a number', line, column) from None
    if not math.isfinite(value):
        raise DataError(path, f'"{text}" is not a finite number', line, column)
    if column in PRICE_COLUMNS and value <= 0:
        raise DataError(path, f'"{text}" is not a positive price', line, column)
    if column == "Volume" and value < 0:
        raise DataError(path, f'"{text}" is not a non-negative volume', line, column)
    return value


def _check_bar(path: Path, line: int, bar: dict[str, float]) -> None:
    """High and Low must bracket the day's other prices, or the row is corrupt."""
    top = max(bar["Open"], bar["Close"], bar["Low"])
    if bar["High"] < top:
        message = f"{bar['High']!r} is below max(Open, Close, Low) = {top!r}"
        raise DataError(path, message, line, "High")
    bottom = min(bar["Open"], bar["Close"])
    if bar["Low"] > bottom:
        message = f"{bar['Low']!r} is above min(Open, Close) = {bottom!r}"
        raise DataError(path, message, line, "Low")


def _column_indices(path: Path, header: list[str]) -> dict[str, int]:
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {found}", 1)
    repeated = [c for c in COLUMNS if header.count(c) > 1]
    if repeated:
        raise DataError(path, f"column(s) {', '.join(repeated)} appear more than once", 1)
    return {c: header.index(c) for c in COLUMNS}


def _read_rows(path: Path) -> tuple[list[date], list[dict[str, float]]]:
    dates: list[date] = []
    bars: list[dict[str, float]] = []
    lines: list[int] = []
    # utf-8-sig: a spreadsheet's byte-order mark would otherwise become part of "Date".
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(path, f"is empty; expected a header with {', '.join(COLUMNS)}")
        index = _column_indices(path, header)
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                message = f"has {len(row)} fields, the header has {len(header)}"
                raise DataError(path, message, line)
            day = _parse_date(path, line, row[index["Date"]])
            bar = {c: _parse_number(path, line, c, row[index[c]]) for c in COLUMNS[1:]}
            _check_bar(path, line, bar)
            if dates and day <= dates[-1]:
                if day == dates[-1]:
                    message = f"{day} repeats the date on line {lines[-1]}"
                else:
                    message = (
                        f"{day} comes before {dates[-1]} on line {lines[-1]}; dates must increase"
                    )
                raise DataError(path, message, line, "Date")
            dates.append(day)
            bars.append(bar)
            lines.append(line)
    return dates, bars


def read_prices(path: Path, symbol: str | None = None, min_rows: int = MIN_ROWS) -> PriceHistory:
    """Read and validate one symbol's daily bars; raise DataError at the first bad cell.

    Columns are found by header name (Date, Open, High, Low, Close, Volume; others such as
    "Adj Close" are ignored), so exports from different sources need no reordering.
    """
    path = Path(path)
    try:
        dates, bars = _read_rows(path)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot be read: {e}") from None
    except csv.Error as e:
        raise DataError(path, f"is not valid CSV: {e}") from None
    if len(dates) < min_rows:
        raise DataError(path, f"has {len(dates)} rows of prices, at least {min_rows} are needed")
    columns = {c: np.array([b[c] for b in bars], dtype=np.float64) for c in COLUMNS[1:]}
    return PriceHistory(
        symbol=path.stem if symbol is None else symbol,
        dates=np.array(dates, dtype="datetime64[D]"),
        open=columns["Open"],
        high=columns["High"],
        low=columns["Low"],
        close=columns["Close"],
        volume=columns["Volume"],
    )


def read_symbols(
    folder: Path, symbols: Sequence[str]
) -> tuple[dict[str, PriceHistory], dict[str, str]]:
    """`folder/<SYMBOL>.csv` of each symbol: the histories read, and why each other one failed.

    One bad file fails its own symbol only, so a run over many symbols goes on without it.
    """
    histories, failed = {}, {}
    for symbol in symbols:
        try:
            histories[symbol] = read_prices(Path(folder) / f"{symbol}.csv", symbol)
        except DataError as error:
            failed[symbol] = str(error)
    return histories, failed


def write_prices(history: PriceHistory, path: Path) -> None:
    """Write `history` in the format `read_prices` reads, atomically.

    Floats are written with repr, which round-trips exactly; the write replaces the file
    in one rename, so a concurrent reader or a crash never sees half a file.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    bar = (history.open, history.high, history.low, history.close, history.volume)
    for i in range(len(history)):
        writer.writerow([str(history.dates[i]), *(repr(float(a[i])) for a in bar)])
    replace_atomically(Path(path), text.getvalue().encode("utf-8"))
