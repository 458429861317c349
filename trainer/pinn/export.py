"""Export the trained PINN to ONNX with its Greeks, check it, and store it.

The graph is the serving contract (recorded in meta.json): input `x`, float32 [N, 7] with
columns domain.COLUMNS; outputs `price`, `delta`, `gamma`, `theta`, `vega`, `rho`, float32
[N]. The Greeks are exact derivatives of the network's price (network.py says how), not
finite differences.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from shared.onnx_runtime import onnx_session
from shared.pinn_graph import COLUMNS, OUTPUTS
from trainer.pinn.domain import sample_inputs
from trainer.pinn.network import NetworkShape, build_correction, price_and_greeks

log = logging.getLogger(__name__)
OPSET = 17
# Largest ONNX-vs-TensorFlow difference accepted, relative to the strike (float32 rounding is ~1e-7).
MAX_DIFFERENCE = 1e-5


class ExportError(RuntimeError):
    """The ONNX graph does not load, uses a non-ONNX op, or disagrees with TensorFlow."""


def serving_function(correction: keras.Model) -> tf.types.experimental.GenericFunction:
    """x [N, 7] float32 -> the six named outputs."""

    @tf.function(input_signature=[tf.TensorSpec([None, len(COLUMNS)], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = price_and_greeks(x, correction)
        return {name: tf.identity(outputs[name], name=name) for name in OUTPUTS}

    return serve


def float32_copy(correction: keras.Model, shape: NetworkShape) -> keras.Model:
    copy = build_correction(shape, "float32")
    copy.set_weights([w.astype(np.float32) for w in correction.get_weights()])
    return copy


@dataclass(frozen=True)
class ExportReport:
    model: bytes
    max_difference: dict[str, float]  # |onnx - tensorflow| / max(scale, |tensorflow|)
    op_types: dict[str, int]

    def as_meta(self) -> dict[str, Any]:
        return {"onnx_vs_tensorflow_max_difference": self.max_difference, "op_types": self.op_types}


def to_onnx(correction: keras.Model, shape: NetworkShape, seed: int = 0) -> ExportReport:
    """Convert, then check: only standard ONNX ops, and onnxruntime agrees with TensorFlow."""
    function = serving_function(float32_copy(correction, shape))
    os.environ.setdefault("TF2ONNX_SKIP_OPSET_VERSION_CHECK", "1")
    model_proto, _ = tf2onnx.convert.from_function(
        function,
        input_signature=function.input_signature,
        opset=OPSET,
    )
    op_types: dict[str, int] = {}
    for node in model_proto.graph.node:
        if node.domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type):
            raise ExportError(
                f"non-ONNX op {node.domain}:{node.op_type} ({node.name}) left in the graph"
            )
        op_types[node.op_type] = op_types.get(node.op_type, 0) + 1
    # tf2onnx lists a dict's outputs alphabetically; the contract lists them as OUTPUTS does.
    by_name = {o.name: o for o in model_proto.graph.output}
    if sorted(by_name) != sorted(OUTPUTS):
        raise ExportError(f"graph outputs are {sorted(by_name)}, expected {list(OUTPUTS)}")
    ordered = [by_name[name] for name in OUTPUTS]
    del model_proto.graph.output[:]
    model_proto.graph.output.extend(ordered)
    names = list(OUTPUTS)
    model = model_proto.SerializeToString()

    x = sample_inputs(np.random.default_rng(seed), 4096).astype(np.float32)
    session = onnx_session(model)
    onnx_out = dict(zip(names, session.run(names, {"x": x}), strict=True))
    tf_out = {k: v.numpy() for k, v in function(tf.constant(x)).items()}
    spot, strike = x[:, 1].astype(np.float64), x[:, 2].astype(np.float64)
    scale = {name: strike for name in OUTPUTS} | {"delta": 1.0, "gamma": strike / spot**2}
    # Absolute (in units of the scale) where an output is small, relative where it is large:
    # short-dated gamma reaches 150 K / S^2 and carries float32 rounding in proportion.
    difference = {
        name: float(
            np.max(
                np.abs(onnx_out[name] - tf_out[name])
                / np.maximum(scale[name], np.abs(tf_out[name]))
            )
        )
        for name in OUTPUTS
    }
    log.info("onnxruntime vs tensorflow, max |difference| (scaled): %s", difference)
    worst = max(difference, key=difference.get)
    if not all(np.isfinite(list(difference.values()))) or difference[worst] > MAX_DIFFERENCE:
        raise ExportError(
            f"onnxruntime and tensorflow disagree on {worst}: {difference[worst]:.3g}"
        )
    return ExportReport(
        model=model, max_difference=difference, op_types=dict(sorted(op_types.items()))
    )
