"""A Keras 3 Mamba (selective state-space) forecaster, written so it saves, reloads and exports.

`MambaBlock` is a Mamba-2 style block (Dao and Gu, 2024): a scalar decay per head, so the
selective scan over a window of length L is one masked L x L matrix per head,

    y_t = sum_{j<=t} (C_t . B_j) exp(a_{j+1} + ... + a_t) dt_j x_j + D x_t,   a_k = dt_k A < 0

computed with cumulative sums of a masked matrix (never exp of two separate cumulative sums,
which underflows in float32) and matmuls; no scan op, so tf2onnx exports it as plain ONNX
(keras.ops.scan and associative_scan leave ops onnxruntime refuses: DESIGN.md section 6).
Keras conventions: configuration in __init__, weights in build() through initializers (an
.assign() in build() is lost on reload), get_config() for round trips, registered for
deserialisation.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "pricing"
_MASKED = -1e9  # not -inf: exp(-inf) in a masked product gives NaN in onnxruntime


def _dt_bias_init(heads: int) -> np.ndarray:
    """softplus^-1 of step sizes spread log-uniformly over [1e-3, 1e-1], as in Mamba."""
    dt = np.exp(np.linspace(math.log(1e-3), math.log(1e-1), heads))
    return dt + np.log(-np.expm1(-dt))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MambaBlock(keras.layers.Layer):
    """Pre-norm residual Mamba-2 block on [batch, length, d_model]."""

    def __init__(
        self, d_model: int, d_state: int = 16, heads: int = 4, expand: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if (expand * d_model) % heads:
            raise ValueError(
                f"expand * d_model = {expand * d_model} must be divisible by heads = {heads}"
            )
        self.d_model, self.d_state, self.heads, self.expand = d_model, d_state, heads, expand
        self.d_inner = expand * d_model
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        # x, the gate z, B, C and one step size per head, from one projection.
        self.in_proj = keras.layers.Dense(2 * self.d_inner + 2 * d_state + heads, name="in_proj")
        self.out_proj = keras.layers.Dense(d_model, name="out_proj")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.norm.build(input_shape)
        self.in_proj.build(input_shape)
        self.out_proj.build((*input_shape[:-1], self.d_inner))
        self.a_log = self.add_weight(
            shape=(self.heads,),
            name="a_log",
            initializer=keras.initializers.Constant(np.log(np.arange(1, self.heads + 1))),
        )
        self.dt_bias = self.add_weight(
            shape=(self.heads,),
            name="dt_bias",
            initializer=keras.initializers.Constant(_dt_bias_init(self.heads)),
        )
        self.skip = self.add_weight(shape=(self.heads,), name="skip", initializer="ones")

    def call(self, inputs: Any) -> Any:
        # The window is fixed per model, so its length is static: no shape arithmetic in the graph.
        length, heads = inputs.shape[1], self.heads
        head_dim = self.d_inner // heads
        projected = self.in_proj(self.norm(inputs))
        x, z, b, c, dt = ops.split(
            projected,
            np.cumsum([self.d_inner, self.d_inner, self.d_state, self.d_state]).tolist(),
            axis=-1,
        )
        dt = ops.softplus(dt + self.dt_bias)  # [batch, L, H]
        a = ops.transpose(dt * -ops.exp(self.a_log), (0, 2, 1))  # a_t <= 0, [batch, H, L]
        # segment[h, i, j] = a_{j+1} + ... + a_i for j < i: a cumulative sum of a masked matrix.
        below = np.tril(np.ones((length, length), dtype="float32"), -1)
        segment = ops.cumsum(ops.expand_dims(a, -1) * below, axis=-2)  # [batch, H, L(i), L(j)]
        causal = np.tril(np.ones((length, length), dtype=bool))
        weights = ops.exp(ops.where(causal, segment, _MASKED))
        scores = ops.matmul(c, ops.transpose(b, (0, 2, 1)))  # C_i . B_j, [batch, L, L]
        xs = ops.reshape(x, (-1, length, heads, head_dim))
        inputs_by_head = ops.transpose(
            xs * ops.expand_dims(dt, -1), (0, 2, 1, 3)
        )  # dt_j x_j, [batch, H, L, P]
        mixed = ops.matmul(weights * ops.expand_dims(scores, 1), inputs_by_head)  # [batch, H, L, P]
        y = ops.transpose(mixed, (0, 2, 1, 3)) + xs * ops.reshape(self.skip, (1, 1, heads, 1))
        y = ops.reshape(y, (-1, length, self.d_inner)) * ops.silu(z)
        return inputs + self.out_proj(y)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "d_model": self.d_model,
            "d_state": self.d_state,
            "heads": self.heads,
            "expand": self.expand,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MambaForecaster(keras.Model):
    """[batch, window, features] -> [batch, outputs]: an embedding, Mamba blocks, the last step."""

    def __init__(
        self,
        outputs: int,
        d_model: int = 16,
        layers: int = 1,
        d_state: int = 16,
        heads: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outputs, self.d_model, self.layers_count, self.d_state, self.heads = (
            outputs,
            d_model,
            layers,
            d_state,
            heads,
        )
        self.embed = keras.layers.Dense(d_model, name="embed")
        self.blocks = [
            MambaBlock(d_model, d_state, heads, name=f"mamba_{i}") for i in range(layers)
        ]
        self.head = keras.layers.Dense(outputs, name="head")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.embed.build(input_shape)
        hidden = (*input_shape[:-1], self.d_model)
        for block in self.blocks:
            block.build(hidden)
        self.head.build((input_shape[0], self.d_model))

    def call(self, inputs: Any) -> Any:
        hidden = self.embed(inputs)
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(hidden[:, -1, :])

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "outputs": self.outputs,
            "d_model": self.d_model,
            "layers": self.layers_count,
            "d_state": self.d_state,
            "heads": self.heads,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ForecasterEnsemble(keras.Model):
    """The mean output of forecasters trained alike from different seeds.

    One small network's forecast carries the noise of its initial weights and of the epoch
    early stopping kept; averaging members trained from other seeds removes much of it (in
    the walk-forward development runs three members halved the distance of the 5-day
    variance forecast to the true one on a synthetic GARCH series). Outputs are averaged
    as they are, anchored log variances and scaled returns, so the variance forecast is the
    members' geometric mean. Exported as one graph, each member's nodes side by side.
    """

    def __init__(self, members: list[MambaForecaster], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for member in self.members:
            if not member.built:  # members restored from a saved config come built
                member.build(input_shape)

    def call(self, inputs: Any) -> Any:
        return ops.mean(ops.stack([member(inputs) for member in self.members]), axis=0)

    def get_config(self) -> dict[str, Any]:
        members = [keras.saving.serialize_keras_object(m) for m in self.members]
        return super().get_config() | {"members": members}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ForecasterEnsemble:
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members, **config)
