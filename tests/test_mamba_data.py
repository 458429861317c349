"""The forecasters' data layer: strict CSV validation, real sample data, synthetic series."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.mamba.data import DataError, PriceHistory, read_prices, write_prices
from trainer.mamba.sample_data import SAMPLE_SYMBOLS, export_samples, sample_history
from trainer.mamba.synthetic import Garch11, garch11, gbm

REPO = Path(__file__).resolve().parents[1]
HEADER = "Date,Open,High,Low,Close,Volume"
ROWS = [
    "2000-01-03,10.0,11.0,9.5,10.5,1000",
    "2000-01-04,10.5,10.75,10.0,10.25,1200",
    "2000-01-05,10.25,10.5,9.75,10.0,0",
    "2000-01-06,10.0,10.5,9.0,10.5,900",
    "2000-01-07,10.5,12.0,10.5,11.5,1500",
]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_valid_file_is_read(tmp_path):
    history = read_prices(write_csv(tmp_path / "ABC.csv", [HEADER, *ROWS]), min_rows=5)
    assert history.symbol == "ABC"
    assert len(history) == 5
    assert history.dates.dtype == np.dtype("datetime64[D]")
    assert history.dates[0] == np.datetime64("2000-01-03")
    np.testing.assert_array_equal(history.close, [10.5, 10.25, 10.0, 10.5, 11.5])
    np.testing.assert_array_equal(history.volume, [1000, 1200, 0, 900, 1500])


def test_extra_columns_and_any_order(tmp_path):
    lines = ["Volume,Adj Close,Close,Low,High,Open,Date"]
    for row in ROWS:
        day, open_, high, low, close, volume = row.split(",")
        lines.append(",".join([volume, "1.0", close, low, high, open_, day]))
    history = read_prices(write_csv(tmp_path / "x.csv", lines), symbol="XYZ", min_rows=5)
    reference = read_prices(write_csv(tmp_path / "y.csv", [HEADER, *ROWS]), min_rows=5)
    assert history.symbol == "XYZ"
    for name in ("dates", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(history, name), getattr(reference, name))


def assert_same(a: PriceHistory, b: PriceHistory) -> None:
    assert a.symbol == b.symbol
    for name in ("dates", "open", "high", "low", "close", "volume"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_write_read_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(7)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 400)))
    history = PriceHistory(
        symbol="RT",
        dates=np.busday_offset("2010-01-04", np.arange(400), roll="forward"),
        open=close * 0.999,
        high=close * 1.0123456789,
        low=close * 0.9876543211,
        close=close,
        volume=rng.integers(0, 10**9, 400).astype(np.float64),
    )
    path = tmp_path / "RT.csv"
    write_prices(history, path)
    assert_same(read_prices(path), history)
    assert [p.name for p in tmp_path.iterdir()] == ["RT.csv"]  # no temporary file left
    assert read_prices(path).symbol == "RT"  # named after the file


def replace_cell(line: int, column: str, value: str):
    """A mutation of the valid file: one cell of 1-based `line` (header is line 1)."""

    def mutate(lines: list[str]) -> list[str]:
        cells = lines[line - 1].split(",")
        cells[HEADER.split(",").index(column)] = value
        return [*lines[: line - 1], ",".join(cells), *lines[line:]]

    return mutate


def drop_column(column: str):
    def mutate(lines: list[str]) -> list[str]:
        index = HEADER.split(",").index(column)
        return [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "min_rows", "expected"),
    [
        pytest.param(
            drop_column("Low"), 5, ["line 1", "missing column(s) Low"], id="missing-column"
        ),
        pytest.param(
            replace_cell(3, "Date", "2000/01/04"),
            5,
            ["line 3", "column Date", "2000/01/04"],
            id="bad-date",
        ),
        pytest.param(
            replace_cell(4, "Date", "2000-02-30"),
            5,
            ["line 4", "column Date"],
            id="impossible-date",
        ),
        pytest.param(replace_cell(2, "Open", ""), 5, ["line 2", "column Open"], id="empty-cell"),
        pytest.param(
            replace_cell(5, "Volume", "NaN"), 5, ["line 5", "column Volume", "NaN"], id="nan"
        ),
        pytest.param(
            replace_cell(6, "Low", "inf"), 5, ["line 6", "column Low", "finite"], id="inf"
        ),
        pytest.param(
            replace_cell(3, "Close", "-3.2"),
            5,
            ["line 3", "column Close", '"-3.2" is not a positive price'],
            id="negative-price",
        ),
        pytest.param(
            replace_cell(2, "Volume", "-1"), 5, ["line 2", "column Volume"], id="negative-volume"
        ),
        pytest.param(
            replace_cell(2, "High", "10.4"),
            5,
            ["line 2", "column High", "10.5"],
            id="high-below-close",
        ),
        pytest.param(
            replace_cell(6, "Low", "11.0"), 5, ["line 6", "column Low", "10.5"], id="low-above-open"
        ),
        pytest.param(
            replace_cell(4, "Date", "2000-01-03"),
            5,
            ["line 4", "column Date", "2000-01-03 comes before 2000-01-04 on line 3"],
            id="unsorted-dates",
        ),
        pytest.param(
            replace_cell(4, "Date", "2000-01-04"),
            5,
            ["line 4", "column Date", "2000-01-04 repeats the date on line 3"],
            id="duplicate-date",
        ),
        pytest.param(
            lambda lines: [*lines[:3], "2000-01-05,10.0", *lines[4:]],
            5,
            ["line 4", "2 fields"],
            id="short-row",
        ),
        pytest.param(lambda lines: lines, 6, ["has 5 rows", "at least 6"], id="too-few-rows"),
        pytest.param(lambda lines: [], 5, ["empty"], id="empty-file"),
        pytest.param(lambda lines: None, 5, ["no such file"], id="missing-file"),
    ],
)
def test_validation_errors_name_file_line_and_column(tmp_path, mutate, min_rows, expected):
    lines = mutate([HEADER, *ROWS])
    path = tmp_path / "BAD.csv" if lines is None else write_csv(tmp_path / "BAD.csv", lines)
    with pytest.raises(DataError) as caught:
        read_prices(path, min_rows=min_rows)
    message = str(caught.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_column_names_are_case_sensitive(tmp_path):
    lines = [HEADER.replace("Close", "close"), *ROWS]
    with pytest.raises(DataError, match=r"missing column.*Close"):
        read_prices(write_csv(tmp_path / "BAD.csv", lines), min_rows=1)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"NOPE\.csv"):
        read_prices(tmp_path / "data" / "NOPE.csv")


def test_default_minimum_is_enforced(tmp_path):
    with pytest.raises(DataError, match="has 5 rows of prices, at least 300 are needed"):
        read_prices(write_csv(tmp_path / "ABC.csv", [HEADER, *ROWS]))


def test_aapl_sample_is_split_adjusted():
    history = sample_history("AAPL")
    assert len(history) > 3000
    assert np.all(np.diff(history.dates) > np.timedelta64(0, "D"))
    for prices in (history.open, history.high, history.low, history.close):
        assert np.all(prices > 0)
    returns = np.diff(np.log(history.close))
    dates = history.dates[1:]
    # The raw closes fall 45% and 50% on the 2:1 split days; adjusted, they are ordinary days.
    for split_day in ("2000-06-21", "2005-02-28"):
        assert abs(returns[dates == np.datetime64(split_day)][0]) < 0.1
    # The one day above 0.4 is real: AAPL lost half its value on a profit warning (2000-09-29).
    assert list(dates[np.abs(returns) > 0.4]) == [np.datetime64("2000-09-29")]


def test_unknown_sample_symbol_lists_available():
    with pytest.raises(ValueError, match="AAPL, MSFT, GOOG, IBM"):
        sample_history("FB")


def test_export_samples_are_readable(tmp_path):
    lines = []
    paths = export_samples(tmp_path / "out", report=lines.append)
    assert [p.name for p in paths] == [f"{s}.csv" for s in SAMPLE_SYMBOLS]
    assert len(lines) == len(SAMPLE_SYMBOLS)
    for symbol, path in zip(SAMPLE_SYMBOLS, paths, strict=True):
        assert_same(read_prices(path), sample_history(symbol))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer.mamba.sample_data", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_writes_chosen_symbols(tmp_path):
    result = run_cli("--out", str(tmp_path), "--symbols", "AAPL,MSFT")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.csv", "MSFT.csv"]
    assert "AAPL.csv" in result.stdout and "MSFT.csv" in result.stdout
    assert len(read_prices(tmp_path / "MSFT.csv")) > 3000


def test_cli_rejects_unknown_symbol(tmp_path):
    result = run_cli("--out", str(tmp_path), "--symbols", "AAPL,TSLA")
    assert result.returncode == 2
    assert "--symbols" in result.stderr and "TSLA" in result.stderr and "GOOG" in result.stderr
    assert not any(tmp_path.iterdir())


def test_gbm_passes_validation(tmp_path):
    history = gbm(500, mu=0.0002, sigma=0.015, seed=3)
    write_prices(history, tmp_path / "GBM.csv")
    assert_same(read_prices(tmp_path / "GBM.csv"), history)
    assert history.dates[0] == np.datetime64("2000-01-03")
    assert np.all(np.is_busday(history.dates))
    assert np.all(np.busday_count(history.dates[:-1], history.dates[1:]) == 1)
    sd = np.diff(np.log(history.close)).std()
    assert 0.9 * 0.015 < sd < 1.1 * 0.015


PARAMS = Garch11(omega=2e-6, alpha=0.05, beta=0.9, mu=0.0003)


def test_garch11_passes_validation_and_is_reproducible(tmp_path):
    history, variance = garch11(600, PARAMS, seed=11)
    write_prices(history, tmp_path / "GARCH11.csv")
    assert_same(read_prices(tmp_path / "GARCH11.csv"), history)
    assert variance.shape == (600,) and variance[0] == PARAMS.unconditional_variance
    again, variance_again = garch11(600, PARAMS, seed=11)
    assert_same(again, history)
    np.testing.assert_array_equal(variance_again, variance)
    other, _ = garch11(600, PARAMS, seed=12)
    assert not np.array_equal(other.close, history.close)


def test_garch11_variance_matches_theory():
    history, variance = garch11(20_000, PARAMS, seed=2024)
    returns = np.diff(np.log(np.concatenate(([100.0], history.close))))
    target = PARAMS.omega / (1 - PARAMS.alpha - PARAMS.beta)
    assert abs(returns.var() / target - 1) < 0.1
    # The variance recursion is the documented one, day by day.
    shocks = returns - PARAMS.mu
    expected = PARAMS.omega + PARAMS.alpha * shocks[:-1] ** 2 + PARAMS.beta * variance[:-1]
    np.testing.assert_allclose(variance[1:], expected, rtol=1e-9)


@pytest.mark.parametrize(
    "params",
    [
        dict(omega=1e-6, alpha=0.1, beta=0.9),
        dict(omega=1e-6, alpha=0.5, beta=0.6),
        dict(omega=0.0, alpha=0.1, beta=0.8),
    ],
)
def test_garch11_rejects_non_stationary(params):
    with pytest.raises(ValueError, match="need"):
        garch11(10, Garch11(mu=0.0, **params), seed=0)
