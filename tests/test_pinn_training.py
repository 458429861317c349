"""`trainer train --model pinn` as a user runs it: real (quick) training in a real process."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from shared.artifact_store import ArtifactStore
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import OUTPUTS, run_model
from trainer.pinn.domain import sample_inputs

QUICK = ["--quick", "--eval-points", "20000"]


def trainer(*args, fault=None, **popen):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TRAINER_INJECT_FAULT", None)
    if fault:
        env["TRAINER_INJECT_FAULT"] = fault
    command = [sys.executable, "-m", "trainer.cli", *args]
    if popen:
        return subprocess.Popen(command, env=env, text=True, **popen)
    return subprocess.run(command, env=env, text=True, capture_output=True, timeout=300)


def train(output, *extra, fault=None):
    return trainer("train", "--model", "pinn", "--output", str(output), *QUICK, *extra, fault=fault)


def promoted(output):
    return ArtifactStore(output).load("pinn", "default")


def outputs_of(artifact, rows=2000):
    x = sample_inputs(np.random.default_rng(99), rows)
    return run_model(onnx_session(artifact.model), x)


def test_quick_training_stores_a_checked_model_and_is_reproducible(tmp_path):
    first = train(tmp_path / "a", "--seed", "7")
    assert first.returncode == 0, first.stderr
    assert "epoch   3/3" in first.stdout and "pde" in first.stdout
    artifact = promoted(tmp_path / "a")
    meta = artifact.meta
    assert meta["interface"]["inputs"][0]["columns"] == [
        "is_put", "spot", "strike", "tau", "rate", "volatility", "dividend_yield",
    ]  # fmt: skip
    assert [o["name"] for o in meta["interface"]["outputs"]] == list(OUTPUTS)
    assert meta["opset"] == 17
    assert max(meta["export"]["onnx_vs_tensorflow_max_difference"].values()) < 1e-5
    assert "Tanh" in meta["export"]["op_types"] and "MatMul" in meta["export"]["op_types"]
    assert meta["accuracy"]["metrics"]["put-call parity max violation / K"]["met"] is True
    assert artifact.files["error.png"].startswith(b"\x89PNG")
    session = onnx_session(artifact.model)
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    assert not (tmp_path / "a" / "pinn" / "default" / "training-checkpoint.npz").exists()

    second = train(tmp_path / "b", "--seed", "7")
    assert second.returncode == 0, second.stderr
    # Same seed, same training and same numbers (the ONNX bytes differ only in generated names).
    again = promoted(tmp_path / "b")
    assert again.meta["training"]["history"] == meta["training"]["history"]
    a, b = outputs_of(artifact), outputs_of(again)
    for name in OUTPUTS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_sigint_checkpoints_and_resume_matches_an_uninterrupted_run(tmp_path):
    epochs = ["--epochs", "6"]
    straight = train(tmp_path / "straight", *epochs)
    assert straight.returncode == 0, straight.stderr

    process = trainer(
        "train", "--model", "pinn", "--output", str(tmp_path / "stopped"), *QUICK, *epochs,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("epoch   2/6"):
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "rerun with --resume" in stderr
    checkpoint = tmp_path / "stopped" / "pinn" / "default" / "training-checkpoint.npz"
    assert checkpoint.exists()
    assert ArtifactStore(tmp_path / "stopped").versions("pinn", "default") == []

    resumed = train(tmp_path / "stopped", *epochs, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    assert "epoch   6/6" in resumed.stdout and "epoch   1/6" not in resumed.stdout
    a, b = outputs_of(promoted(tmp_path / "straight")), outputs_of(promoted(tmp_path / "stopped"))
    for name in OUTPUTS:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_nan_loss_keeps_the_best_weights_or_fails_without_a_model(tmp_path):
    later = train(tmp_path / "later", fault="nan@2")
    assert later.returncode == 0, later.stderr
    assert "keeping the weights of epoch 1" in later.stdout
    meta = promoted(tmp_path / "later").meta
    assert "loss became nan in epoch 2" in meta["training"]["diverged"]
    assert [h["epoch"] for h in meta["training"]["history"]] == [1]

    first = train(tmp_path / "first", fault="nan@1")
    assert first.returncode == 3
    assert "no usable model" in first.stderr
    assert ArtifactStore(tmp_path / "first").versions("pinn", "default") == []


def test_out_of_memory_halves_the_batch_then_fails_clearly(tmp_path):
    # The hook makes any chunk above ROWS rows raise tf.errors.ResourceExhaustedError in the step.
    fits = train(tmp_path / "fits", fault="oom@2:1000")
    assert fits.returncode == 0, fits.stderr
    assert "retrying the epoch with batch size 2000" in fits.stderr
    assert "retrying the epoch with batch size 1000" in fits.stderr

    never = train(tmp_path / "never", fault="oom@1:100")
    assert never.returncode == 5
    assert "out of memory at batch size 500 (floor 256)" in never.stderr


def test_gpu_failure_falls_back_to_cpu(tmp_path):
    result = train(tmp_path, fault="gpu@2")
    assert result.returncode == 0, result.stderr
    assert "GPU failed" in result.stderr and "falling back to the CPU" in result.stderr
    assert promoted(tmp_path).meta["training"]["history"][-1]["epoch"] == 3


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["train", "--model", "pinn", "--epochs", "0"], "--epochs"),
        (["train", "--model", "pinn", "--seed", "-1"], "--seed"),
        (["train", "--model", "lstm"], "--model"),
        (["train", "--model", "pinn", "--eval-points", "ten"], "--eval-points"),
    ],
)
def test_bad_arguments_name_the_flag(args, flag):
    result = trainer(*args)
    assert result.returncode == 2
    assert flag in result.stderr


def test_resume_without_checkpoint_is_a_usage_error(tmp_path):
    result = train(tmp_path, "--resume")
    assert result.returncode == 2
    assert "--resume: no checkpoint" in result.stderr


def test_evaluate_records_the_table_in_meta(tmp_path):
    assert train(tmp_path).returncode == 0
    before = promoted(tmp_path)
    result = trainer("evaluate", "--model", "pinn", "--output", str(tmp_path), "--points", "5000")
    assert result.returncode == 0, result.stderr
    assert "| price max abs error / K |" in result.stdout
    after = promoted(tmp_path).meta["accuracy"]
    assert after["evaluated_points"] == 5000 != before.meta["accuracy"]["evaluated_points"]
    assert after["metrics"].keys() == before.meta["accuracy"]["metrics"].keys()
    assert promoted(tmp_path).model == before.model  # still whole: its checksum verified on load
