"""`trainer train --model mamba` end to end on real and synthetic prices, quick models."""

import os
import subprocess
import sys

import numpy as np
import pytest

from shared.artifact_store import ArtifactStore
from shared.features import Standardizer, causal_features
from shared.forecast_scale import ANCHOR_COLUMN, decode
from shared.onnx_runtime import onnx_session
from trainer.cli import main
from trainer.mamba.data import read_prices, write_prices
from trainer.mamba.model import ForecasterEnsemble
from trainer.mamba.publish import publish
from trainer.mamba.sample_data import export_samples
from trainer.mamba.synthetic import Garch11, garch11
from trainer.mamba.train import MambaConfig, build_dataset, train_symbol


def trainer(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    export_samples(folder, ("AAPL",))
    history, _ = garch11(2500, Garch11(omega=2e-6, alpha=0.08, beta=0.9, mu=0.0003), seed=4)
    write_prices(history, folder / "SYN.csv")
    return folder


def test_training_publishes_a_whole_forecaster_per_symbol(data, tmp_path):
    result = trainer(
        "train",
        "--model",
        "mamba",
        "--symbols",
        "AAPL,SYN",
        "--data",
        str(data),
        "--output",
        str(tmp_path),
        "--quick",
    )
    assert result.returncode == 0, result.stderr
    assert "2 of 2 symbols trained" in result.stdout
    store = ArtifactStore(tmp_path)
    for symbol in ("AAPL", "SYN"):
        artifact = store.load("mamba", symbol)
        meta = artifact.meta
        assert meta["horizons"] == [1, 5, 10, 30] and meta["window"] == 64
        assert meta["export"]["onnx_vs_keras_max_difference"] <= 1e-5
        # What the server will do: features of the last closes, standardised, run, decoded.
        closes = read_prices(data / f"{symbol}.csv").close[-meta["features"]["closes_needed"] :]
        features = causal_features(closes)
        scaler = Standardizer.from_meta(meta["features"]["standardizer"])
        x = scaler.transform(features[-meta["window"] :])[None].astype(np.float32)
        [y] = onnx_session(artifact.model).run(["y"], {"x": x})
        log_return, volatility = decode(y, features[-1:, ANCHOR_COLUMN], tuple(meta["horizons"]))
        assert np.isfinite(log_return).all()
        assert ((volatility > 0.02) & (volatility < 3.0)).all(), volatility


def test_the_published_forecaster_is_the_mean_of_its_members(data, tmp_path):
    closes = read_prices(data / "SYN.csv").close
    config = MambaConfig.quick(members=2, epochs=1)
    result = train_symbol(closes, config)
    publish(ArtifactStore(tmp_path), "SYN", result, config, len(closes))
    artifact = ArtifactStore(tmp_path).load("mamba", "SYN")
    assert artifact.meta["training"]["config"]["members"] == 2
    assert isinstance(result.model, ForecasterEnsemble) and len(result.model.members) == 2
    x = result.dataset.x_val
    members = [np.asarray(member(x)) for member in result.model.members]
    assert not np.allclose(*members, atol=1e-3)  # two seeds: two different networks
    [y] = onnx_session(artifact.model).run(["y"], {"x": x})
    np.testing.assert_allclose(y, np.mean(members, axis=0), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--model", "mamba", "--symbols", "SYN", "--data", ".", "--members", "0"],
        ["train", "--model", "mamba", "--symbols", "SYN", "--data", ".", "--members", "1.5"],
        ["evaluate", "--model", "mamba", "--synthetic", "garch", "--members", "0"],
        ["train", "--model", "pinn", "--members", "2"],
    ],
)
def test_members_is_a_positive_integer_for_the_mamba_only(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert "--members" in capsys.readouterr().err


def test_standardizer_sees_no_validation_rows(data):
    closes = read_prices(data / "SYN.csv").close
    dataset = build_dataset(closes, MambaConfig.quick())
    last_training_row = dataset.train_days[-1]
    refit = Standardizer.fit(causal_features(closes)[64 + 2 : last_training_row + 1])
    assert np.allclose(
        refit.mean, dataset.scaler.mean, atol=0.05
    )  # same rows, give or take the lookback
    assert (
        dataset.val_days[0] - 63 > dataset.train_days[-1] + 30
    )  # purged: no shared inputs or labels


def test_bad_data_and_flags_are_usage_errors(data, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,1,1,-1,100\n")
    result = trainer(
        "train",
        "--model",
        "mamba",
        "--symbols",
        "BAD",
        "--data",
        str(bad),
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "BAD.csv line 2" in result.stderr and "--data" in result.stderr
    no_symbols = trainer("train", "--model", "mamba", "--data", str(data))
    assert no_symbols.returncode == 2 and "--symbols" in no_symbols.stderr


def test_a_symbol_that_fails_does_not_stop_the_others(data, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = (data / "SYN.csv").read_text().splitlines()
    (folder / "SYN.csv").write_text("\n".join(lines) + "\n")
    (folder / "TINY.csv").write_text("\n".join(lines[:120]) + "\n")  # too few rows to train
    result = trainer(
        "train",
        "--model",
        "mamba",
        "--symbols",
        "TINY,SYN,NOPE",
        "--data",
        str(folder),
        "--output",
        str(tmp_path),
        "--quick",
    )
    assert result.returncode == 6, result.stderr
    assert "TINY: failed" in result.stderr and "NOPE: failed" in result.stderr
    assert "1 of 3 symbols trained; failed: TINY, NOPE" in result.stdout
    assert ArtifactStore(tmp_path).versions("mamba", "SYN") == ["v0001"]
    assert ArtifactStore(tmp_path).versions("mamba", "TINY") == []
