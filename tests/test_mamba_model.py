"""The Keras Mamba (seed P0-7): right maths, proper build/config, clean save/reload and export."""

import warnings

import keras
import numpy as np
import pytest

from trainer.mamba.export import to_onnx
from trainer.mamba.model import ForecasterEnsemble, MambaBlock, MambaForecaster

WINDOW, FEATURES = 64, 5


@pytest.fixture
def inputs():
    return np.random.default_rng(0).normal(size=(4, WINDOW, FEATURES)).astype("float32")


def softplus(x):
    return np.log1p(np.exp(x))


def test_block_equals_the_sequential_state_space_recurrence():
    block = MambaBlock(d_model=8, d_state=4, heads=2, expand=2)
    u = np.random.default_rng(1).normal(size=(2, 40, 8)).astype("float64")
    block.build(u.shape)
    block.set_weights([w * 1.5 for w in block.get_weights()])  # larger steps: decay really matters
    expected = np.asarray(block(u.astype("float32")), dtype=np.float64)

    # The recurrence h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t', y_t = h_t C_t + D x_t, step by step.
    projected = np.asarray(block.in_proj(block.norm(u.astype("float32"))), dtype=np.float64)
    d_inner, n, heads = block.d_inner, block.d_state, block.heads
    x, z = projected[..., :d_inner], projected[..., d_inner : 2 * d_inner]
    b, c = (
        projected[..., 2 * d_inner : 2 * d_inner + n],
        projected[..., 2 * d_inner + n : 2 * d_inner + 2 * n],
    )
    dt = softplus(projected[..., 2 * d_inner + 2 * n :] + np.asarray(block.dt_bias))
    a = -np.exp(np.asarray(block.a_log, dtype=np.float64))
    skip = np.asarray(block.skip, dtype=np.float64)
    head_dim = d_inner // heads
    y = np.zeros_like(x)
    for batch in range(u.shape[0]):
        state = np.zeros((heads, head_dim, n))
        for t in range(u.shape[1]):
            xs = x[batch, t].reshape(heads, head_dim)
            state = (
                np.exp(dt[batch, t] * a)[:, None, None] * state
                + (dt[batch, t][:, None, None] * xs[:, :, None]) * b[batch, t][None, None, :]
            )
            y[batch, t] = (state @ c[batch, t] + skip[:, None] * xs).reshape(-1)
    gated = y * z / (1 + np.exp(-z))
    recurrent = u + np.asarray(block.out_proj(gated.astype("float32")), dtype=np.float64)
    np.testing.assert_allclose(expected, recurrent, rtol=1e-4, atol=1e-5)


def test_weights_come_from_build_and_config_round_trips(inputs):
    model = MambaForecaster(outputs=8, d_model=16, layers=2)
    assert not model.built
    model.build(inputs.shape)
    assert model.built and len(model.trainable_weights) > 0
    twin = MambaForecaster.from_config(model.get_config())
    twin.build(inputs.shape)
    assert [w.shape for w in twin.weights] == [w.shape for w in model.weights]


def test_keras_save_and_reload_give_identical_outputs(tmp_path, inputs):
    model = MambaForecaster(outputs=8)
    before = np.asarray(model(inputs))
    model.save(tmp_path / "forecaster.keras")
    reloaded = keras.saving.load_model(tmp_path / "forecaster.keras")
    assert isinstance(reloaded, MambaForecaster)
    np.testing.assert_array_equal(np.asarray(reloaded(inputs)), before)


def test_training_emits_no_warnings(inputs):
    keras.utils.set_random_seed(0)
    model = MambaForecaster(outputs=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    targets = np.random.default_rng(2).normal(size=(inputs.shape[0], 8)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(inputs, targets, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_onnx_export_matches_keras_without_loops(inputs):
    model = MambaForecaster(outputs=8)
    model(inputs)
    exported = to_onnx(model, WINDOW, FEATURES)
    assert exported.max_difference <= 1e-5
    assert not {"Loop", "Scan", "If"} & exported.op_types.keys()
    assert "Einsum" in exported.op_types or "MatMul" in exported.op_types


def test_ensemble_is_the_mean_of_its_members_and_saves_reloads_and_exports(tmp_path, inputs):
    members = [MambaForecaster(outputs=8, d_model=8, d_state=4, heads=2) for _ in range(2)]
    ensemble = ForecasterEnsemble(members)
    expected = np.mean([np.asarray(m(inputs)) for m in members], axis=0)
    np.testing.assert_allclose(np.asarray(ensemble(inputs)), expected, rtol=1e-6, atol=1e-7)
    ensemble.save(tmp_path / "ensemble.keras")
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    assert isinstance(reloaded, ForecasterEnsemble) and len(reloaded.members) == 2
    np.testing.assert_array_equal(np.asarray(reloaded(inputs)), np.asarray(ensemble(inputs)))
    assert to_onnx(ensemble, WINDOW, FEATURES).max_difference <= 1e-5
