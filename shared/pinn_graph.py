"""The PINN's ONNX graph as trainer and server share it: its columns and outputs.

The contract: one input `x`, float32 [N, 7] with columns COLUMNS; outputs OUTPUTS, float32
[N]. Imports onnxruntime, so only installs with the `server` or `trainer` extra use it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

COLUMNS = ("is_put", "spot", "strike", "tau", "rate", "volatility", "dividend_yield")
OUTPUTS = ("price", "delta", "gamma", "theta", "vega", "rho")


def run_model(
    session: ort.InferenceSession, x: np.ndarray, chunk: int = 65_536
) -> dict[str, np.ndarray]:
    """The six outputs for the rows of x (float64 in, cast to float32; float64 out), in chunks."""
    parts = [
        session.run(list(OUTPUTS), {"x": x[i : i + chunk].astype(np.float32)})
        for i in range(0, len(x), chunk)
    ]
    return {
        name: np.concatenate([p[j] for p in parts]).astype(np.float64)
        for j, name in enumerate(OUTPUTS)
    }
