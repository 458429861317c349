"""Export a forecaster to ONNX and check it against Keras before anyone may use it.

A ForecasterEnsemble exports as one graph, its members' nodes side by side and their mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tf2onnx

from shared.onnx_runtime import onnx_session

OPSET = 17
MAX_DIFFERENCE = 1e-5
# Control flow and TensorFlow leftovers that would make onnxruntime slow or refuse the graph.
FORBIDDEN_OPS = frozenset({"Loop", "Scan", "If"})


class MambaExportError(RuntimeError):
    """The graph has forbidden ops or disagrees with Keras."""


@dataclass(frozen=True)
class MambaExport:
    model: bytes
    max_difference: float
    op_types: dict[str, int]

    def as_meta(self) -> dict[str, Any]:
        return {"onnx_vs_keras_max_difference": self.max_difference, "op_types": self.op_types}


def to_onnx(model: keras.Model, window: int, features: int, seed: int = 0) -> MambaExport:
    """Input `x` float32 [N, window, features] -> output `y` float32 [N, outputs]."""

    @tf.function(input_signature=[tf.TensorSpec([None, window, features], tf.float32, name="x")])
    def forecast(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.identity(model(x), name="y")}

    os.environ.setdefault("TF2ONNX_SKIP_OPSET_VERSION_CHECK", "1")
    proto, _ = tf2onnx.convert.from_function(
        forecast, input_signature=forecast.input_signature, opset=OPSET
    )
    op_types: dict[str, int] = {}
    for node in proto.graph.node:
        op_types[node.op_type] = op_types.get(node.op_type, 0) + 1
    if bad := FORBIDDEN_OPS & op_types.keys() or {
        n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")
    }:
        raise MambaExportError(f"the exported graph contains {sorted(bad)}")
    exported = proto.SerializeToString()
    x = np.random.default_rng(seed).normal(size=(16, window, features)).astype(np.float32)
    onnx_y = onnx_session(exported).run(["y"], {"x": x})[0]
    keras_y = np.asarray(model(x))
    difference = float(np.max(np.abs(onnx_y - keras_y)))
    if not np.isfinite(difference) or difference > MAX_DIFFERENCE:
        raise MambaExportError(
            f"onnxruntime and Keras differ by {difference:.3g} (limit {MAX_DIFFERENCE})"
        )
    return MambaExport(exported, difference, dict(sorted(op_types.items())))
