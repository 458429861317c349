"""Training forecasters in parallel and through faults: real processes, real signals, real files."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.artifact_store import CHECKPOINT_FILE, ArtifactStore
from shared.onnx_runtime import onnx_session
from trainer.mamba.data import write_prices
from trainer.mamba.synthetic import gbm
from trainer.mamba.train import MambaConfig, member_checkpoints, train_symbol
from trainer.safe_training import FAULT_ENV, TrainingDiverged

SYMBOLS = ("SA", "SB", "SC", "SD")
DAYS = 700


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prices")
    for seed, symbol in enumerate(SYMBOLS):
        write_prices(gbm(DAYS, 0.05, 0.2, seed=seed), folder / f"{symbol}.csv")
    return folder


def trainer(*args, **popen):
    command = [sys.executable, "-m", "trainer.cli", "train", "--model", "mamba", "--quick", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def test_two_runs_of_four_workers_at_once_leave_only_whole_loadable_versions(data, tmp_path):
    args = ("--symbols", ",".join(SYMBOLS), "--data", str(data), "--workers", "4")
    runs = [trainer(*args, "--output", str(tmp_path), "--seed", str(seed)) for seed in (0, 1)]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, out + err
        assert "4 of 4 symbols trained" in out
    store = ArtifactStore(tmp_path)
    probe = np.zeros((1, 64, 5), np.float32)
    for symbol in SYMBOLS:
        versions = store.versions("mamba", symbol)
        assert versions == ["v0001", "v0002"]
        assert store.current_version("mamba", symbol) in versions
        for version in versions:  # each whole: checksums verified on load, and it runs
            artifact = store.load("mamba", symbol, version)
            assert np.isfinite(onnx_session(artifact.model).run(["y"], {"x": probe})[0]).all()
        leftovers = [
            p.name for p in (tmp_path / "mamba" / symbol).iterdir() if p.name.startswith(".tmp")
        ]
        assert leftovers == []


def test_a_failing_symbol_fails_alone_and_the_summary_says_which(data, tmp_path):
    (data / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,1,1,-5,10\n")
    run = trainer("--symbols", "SA,BAD,NOFILE,SB", "--data", str(data), "--workers", "2",
                  "--output", str(tmp_path))  # fmt: skip
    out, err = run.communicate(timeout=600)
    assert run.returncode == 6, out + err
    assert "2 of 4 symbols trained; failed: BAD, NOFILE" in out  # read before training
    assert "BAD: failed: --data:" in err and "NOFILE: failed: --data:" in err
    assert ArtifactStore(tmp_path).current_version("mamba", "SA") == "v0001"
    assert ArtifactStore(tmp_path).current_version("mamba", "SB") == "v0001"


def test_ctrl_c_in_the_second_member_and_resume_end_as_the_uninterrupted_run(data, tmp_path):
    args = ("--symbols", "SA", "--data", str(data), "--epochs", "6", "--members", "2")
    straight = trainer(*args, "--output", str(tmp_path / "straight"))
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, out + err
    stopped_dir = tmp_path / "stopped"
    first, second = member_checkpoints(stopped_dir / "mamba" / "SA" / CHECKPOINT_FILE, 2)
    stopped = trainer(*args, "--output", str(stopped_dir))
    deadline = time.monotonic() + 300
    while not second.exists():  # the first member is done, and the second's first epoch
        assert time.monotonic() < deadline and stopped.poll() is None
        time.sleep(0.05)
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, out + err
    assert "rerun with --resume" in err and first.exists() and second.exists()
    resumed = trainer(*args, "--output", str(stopped_dir), "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out + err
    assert not first.exists() and not second.exists()

    def outcome(root):
        meta = json.loads((root / "mamba" / "SA" / "v0001" / "meta.json").read_text())
        return meta["validation"], meta["training"]["epochs_run"]

    validation, epochs_run = outcome(tmp_path / "straight")
    assert outcome(stopped_dir) == (validation, epochs_run)
    # The finished member came back from its checkpoint, after its last epoch: not retrained.
    assert f"resuming after epoch {epochs_run[0]} from {first}" in err


def test_nan_keeps_the_best_epoch_and_out_of_memory_halves_the_batch(monkeypatch):
    closes = gbm(DAYS, 0.05, 0.2, seed=7).close
    config = MambaConfig.quick(epochs=4, patience=10)
    monkeypatch.setenv(FAULT_ENV, "nan@2")
    assert train_symbol(closes, config).epochs_run == (2,)  # epochs 0 and 1 finished
    monkeypatch.setenv(FAULT_ENV, "nan@0")
    with pytest.raises(TrainingDiverged, match="no usable model"):
        train_symbol(closes, config)
    monkeypatch.setenv(FAULT_ENV, "oom@1:16")  # batches above 16 rows fail from epoch 1
    result = train_symbol(closes, config)
    assert result.epochs_run == (4,) and np.isfinite(result.validation["loss"])
