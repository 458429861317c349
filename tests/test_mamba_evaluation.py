"""Walk-forward evaluation of the forecasters: causal baselines, losses, DM, the CLI's report."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from arch import arch_model

from shared.features import causal_features, log_returns
from trainer.cli import main
from trainer.mamba.baselines import BASELINES, Ewma, Garch, Har
from trainer.mamba.data import write_prices
from trainer.mamba.evaluate import EvaluationConfig, walk_forward_forecasts
from trainer.mamba.scoring import diebold_mariano, newey_west_variance, qlike
from trainer.mamba.synthetic import Garch11, garch11
from trainer.mamba.windows import HORIZONS

PROCESS = Garch11(omega=2e-6, alpha=0.08, beta=0.9, mu=0.0003)


@pytest.fixture(scope="module")
def closes():
    return garch11(900, PROCESS, seed=11)[0].close


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_forecast_from_data_up_to_the_forecast_day_only(closes, name):
    t = 600
    changed = closes.copy()
    changed[t + 1 :] *= np.exp(np.random.default_rng(1).normal(0, 0.05, len(closes) - t - 1))
    days = np.arange(130, len(closes) - 30)
    baseline = BASELINES[name].fit(closes[:401], HORIZONS)  # parameters from days up to 400
    before, after = baseline.forecast(closes, days), baseline.forecast(changed, days)
    np.testing.assert_array_equal(before[days <= t], after[days <= t])
    assert not np.allclose(before[days > t + 1], after[days > t + 1])  # the check can fail
    assert before.shape == (len(days), len(HORIZONS)) and (before > 0).all()


def test_ewma_is_the_riskmetrics_recursion_by_hand():
    returns = np.array([0.01, -0.02, 0.015, 0.0, 0.03])
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    s2 = returns[0] ** 2
    expected = [s2]
    for r in returns[1:]:
        s2 = 0.94 * s2 + 0.06 * r**2
        expected.append(s2)
    forecast = Ewma.fit(closes, (1, 5)).forecast(closes, np.arange(1, 6))
    np.testing.assert_allclose(forecast, np.column_stack([expected, expected]), rtol=1e-12)


def test_garch_forecasts_are_arch_s_own(closes):
    fitted = Garch.fit(closes[:701], HORIZONS)
    days = np.arange(700, 870)
    percent = 100 * log_returns(closes)[1 : days[-1] + 1]
    model = arch_model(percent, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    params = np.array([fitted.process.omega * 1e4, fitted.process.alpha, fitted.process.beta, 8.0])
    # Row i: the forecast made with returns up to day 700 + i (arch indexes returns from day 1).
    paths = model.forecast(params, horizon=30, start=699, reindex=False).variance.to_numpy()
    expected = np.column_stack([paths[:, :h].mean(axis=1) for h in HORIZONS]) / 1e4
    np.testing.assert_allclose(fitted.forecast(closes, days), expected, rtol=1e-9)


def test_garch_recovers_the_generating_process():
    long = garch11(6000, PROCESS, seed=5)[0].close
    process = Garch.fit(long, HORIZONS).process
    assert abs(process.alpha - PROCESS.alpha) < 0.03 and abs(process.beta - PROCESS.beta) < 0.04
    assert process.unconditional_variance == pytest.approx(PROCESS.unconditional_variance, rel=0.2)


def test_har_fit_recovers_known_coefficients():
    rng = np.random.default_rng(2)
    regressors = np.column_stack(
        [np.ones(4000), causal_features(garch11(4000, PROCESS, seed=3)[0].close)[:, 1:4]]
    )
    truth = np.array([[-1.0, 0.1, 0.3, 0.5], [-0.5, 0.05, 0.2, 0.7]])
    noise = rng.normal(0, 0.1, (4000, 2))
    labels = regressors @ truth.T + noise
    labels[-5:, 1] = np.nan  # a label past the fit day: that row is left out of its horizon
    har = Har.from_rows((1, 5), regressors, labels)
    # Slopes to +-0.02; the constant less tightly, as the log variances sit near -9, far from 0.
    np.testing.assert_allclose(har.coefficients[:, 1:], truth[:, 1:], atol=0.02)
    np.testing.assert_allclose(har.coefficients[:, 0], truth[:, 0], atol=0.1)
    # Duan's smearing of normal residuals: E exp(e) = exp(sigma^2 / 2).
    np.testing.assert_allclose(har.smearing, np.exp(0.1**2 / 2), rtol=0.005)


def test_qlike_and_diebold_mariano_by_hand():
    assert qlike(np.array([2.0]), np.array([2.0]))[0] == 0
    assert qlike(np.array([2.0]), np.array([1.0]))[0] == pytest.approx(1 - np.log(2))
    # Differentials 1, -1, 2, 0, 3: mean 1, centred 0, -2, 1, -1, 2.
    # gamma0 = 10 / 5 = 2; gamma1 = (0 - 2 - 1 - 2) / 5 = -1.
    loss, benchmark = np.array([2.0, 0.0, 3.0, 1.0, 4.0]), np.ones(5)
    assert newey_west_variance(loss - benchmark, 0) == pytest.approx(2.0)
    # Lag 1, Bartlett weight 1/2: 2 + 2 * 0.5 * -1 = 1, so t = 1 / sqrt(1 / 5).
    assert newey_west_variance(loss - benchmark, 1) == pytest.approx(1.0)
    assert diebold_mariano(loss, benchmark, 1) == pytest.approx(np.sqrt(5))
    assert diebold_mariano(loss, benchmark, 0) == pytest.approx(1 / np.sqrt(2 / 5))
    assert diebold_mariano(benchmark, loss, 1) == pytest.approx(-np.sqrt(5))


def test_walk_forward_forecasts_use_nothing_after_their_day():
    history, _ = garch11(900, PROCESS, seed=6)
    config = EvaluationConfig.quick(refit_days=200)
    before = walk_forward_forecasts(history, config)
    last = before.days[199]  # the first block's last forecast day
    changed = history.close.copy()
    changed[last + 1 :] *= np.exp(np.random.default_rng(2).normal(0, 0.05, len(changed) - last - 1))
    after = walk_forward_forecasts(dataclasses.replace(history, close=changed), config)
    assert before.refits == 2 and list(before.days) == list(after.days)
    first = before.days <= last
    for name, variance in before.variance.items():
        np.testing.assert_array_equal(variance[first], after.variance[name][first], err_msg=name)
        assert not np.allclose(variance[~first], after.variance[name][~first]), name
    np.testing.assert_array_equal(before.mamba_return[first], after.mamba_return[first])


def test_cli_writes_table_json_and_plot(tmp_path):
    history, _ = garch11(1000, PROCESS, seed=4)
    write_prices(history, tmp_path / "SYN.csv")
    report = tmp_path / "out" / "evaluation.json"
    result = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "evaluate", "--model", "mamba", "--symbols", "SYN",
         "--data", str(tmp_path), "--synthetic", "garch", "--quick", "--refit-days", "200",
         "--report", str(report)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # Python warnings; TensorFlow's own log says WARNING
    assert "| SYN | 5 |" in result.stdout and "| GARCH11 | 30 |" in result.stdout
    document = json.loads(report.read_text())
    assert document["config"]["refit_days"] == 200
    syn, synthetic = document["series"]["SYN"], document["series"]["GARCH11"]
    assert syn["refits"] == 2 and syn["out_of_sample"]["days"] == 1000 - 129 - 30 - 504
    assert list(syn["horizons"]) == ["1", "5", "10", "30"]
    scores = syn["horizons"]["5"]
    assert set(scores["qlike"]) == {"mamba", "ewma", "garch", "har"}
    assert set(scores["dm_qlike"]) == {"ewma", "garch", "har"}
    assert 0 < scores["returns"]["up_rate"] < 1
    assert "true" in synthetic["horizons"]["5"]["qlike"]
    assert np.isfinite(
        [v for s in (syn, synthetic) for v in s["horizons"]["5"]["qlike"].values()]
    ).all()
    assert report.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--model", "mamba"], "--symbols"),
        (["--model", "mamba", "--symbols", "AAPL"], "--data"),
        (["--model", "mamba", "--symbols", "AAPL", "--data", "/nonexistent"], "--data"),
        (["--model", "mamba", "--symbols", " , "], "--symbols"),
        (["--model", "mamba", "--synthetic", "garch", "--refit-days", "0"], "--refit-days"),
        (["--model", "mamba", "--synthetic", "gbm"], "--synthetic"),
        (["--model", "mamba", "--synthetic", "garch", "--points", "10"], "--points"),
        (["--model", "pinn", "--symbols", "AAPL"], "--symbols"),
    ],
)
def test_bad_flags_are_usage_errors_that_name_the_flag(args, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", *args])
    assert stop.value.code == 2
    assert flag in capsys.readouterr().err
