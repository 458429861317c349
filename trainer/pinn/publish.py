"""From trained weights to a promoted model: export, check, evaluate, store, promote."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.artifact_store import MODEL_FILE, Artifact, ArtifactStore
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import COLUMNS, OUTPUTS
from trainer.pinn.domain import DOMAIN, sample_inputs
from trainer.pinn.evaluate import Metric, accuracy, as_meta, error_plot
from trainer.pinn.export import OPSET, ExportError, to_onnx
from trainer.pinn.train import TrainConfig, TrainResult
from trainer.provenance import library_versions

KIND, NAME = "pinn", "default"
PLOT_FILE = "error.png"

INTERFACE = {
    "inputs": [
        {"name": "x", "dtype": "float32", "shape": ["N", len(COLUMNS)], "columns": list(COLUMNS)}
    ],
    "outputs": [{"name": name, "dtype": "float32", "shape": ["N"]} for name in OUTPUTS],
    "is_put": "0.0 call, 1.0 put",
    "conventions": "theta = dV/dt per year of calendar time; vega per 1.00 of volatility; rho per 1.00 of rate",
}


def check_loads(artifact: Artifact) -> None:
    """The stored bytes open in onnxruntime and give finite outputs for a warm-up batch."""
    session = onnx_session(artifact.model)
    x = sample_inputs(np.random.default_rng(0), 256).astype(np.float32)
    outputs = session.run(list(OUTPUTS), {"x": x})
    if not all(np.isfinite(o).all() for o in outputs):
        raise ExportError(f"{artifact.path / MODEL_FILE}: non-finite outputs on the warm-up batch")


def publish(
    store: ArtifactStore, result: TrainResult, config: TrainConfig, eval_points: int
) -> tuple[Artifact, list[Metric]]:
    """Export and check, measure, write a new version, and promote it once it loads."""
    report = to_onnx(result.correction, config.shape, config.seed)
    table = accuracy(report.model, eval_points)
    meta: dict[str, Any] = {
        "interface": INTERFACE,
        "domain": DOMAIN.as_meta(),
        "opset": OPSET,
        "network": {
            "form": "V = sqrt(S' D) v(k, s) + sign (S' - D) / 2; v = Bachelier-type term + "
            "s^3 phi(z)(1 + 2z^2)(1 + s^2 g)/24, g = MLP(k^2, s)",
            "width": config.shape.width,
            "depth": config.shape.depth,
            "activation": "tanh",
            "weights": int(result.correction.count_params()),
        },
        "training": {
            "config": config.as_meta(),
            "seconds": round(result.seconds, 1),
            "history": result.history,
            "diverged": result.diverged,
        },
        "export": report.as_meta(),
        "accuracy": {"evaluated_points": eval_points, "metrics": as_meta(table)},
        "libraries": library_versions(),
    }
    files = {MODEL_FILE: report.model, PLOT_FILE: error_plot(report.model)}
    written = store.write(KIND, NAME, files, meta)
    check_loads(store.load(KIND, NAME, written.version))
    store.promote(KIND, NAME, written.version)
    return written, table
