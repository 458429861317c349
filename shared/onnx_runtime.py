"""The onnxruntime session every model here runs in, trainer checks and server alike.

Imports onnxruntime, so only installs with the `server` or `trainer` extra use it.
"""

from __future__ import annotations

import onnxruntime as ort


def onnx_session(model: bytes) -> ort.InferenceSession:
    """One session with the settings measured best for these small graphs (DESIGN.md section 6)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
