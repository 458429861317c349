"""From a trained forecaster to a promoted `models/mamba/<SYMBOL>/<version>/`."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.artifact_store import MODEL_FILE, Artifact, ArtifactStore
from shared.features import FEATURE_NAMES, LOOKBACK
from shared.forecast_scale import ANCHOR_FEATURE
from shared.onnx_runtime import onnx_session
from trainer.mamba.export import OPSET, MambaExportError, to_onnx
from trainer.mamba.train import MambaConfig, MambaResult
from trainer.provenance import library_versions

KIND = "mamba"


def publish(
    store: ArtifactStore, symbol: str, result: MambaResult, config: MambaConfig, rows: int
) -> Artifact:
    """Export and check, write a new version for the symbol, promote it once it loads."""
    exported = to_onnx(result.model, config.window, len(FEATURE_NAMES), config.seed)
    meta: dict[str, Any] = {
        "interface": {
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": ["N", config.window, len(FEATURE_NAMES)]}
            ],
            "outputs": [
                {"name": "y", "dtype": "float32", "shape": ["N", 2 * len(config.horizons)]}
            ],
            "outputs_meaning": "volatility-scaled log-returns then anchored log variances, per horizon; "
            "decode with shared.forecast_scale.decode",
        },
        "window": config.window,
        "horizons": list(config.horizons),
        "features": {
            "names": list(FEATURE_NAMES),
            "lookback": LOOKBACK,
            "closes_needed": LOOKBACK + config.window,
            "anchor": ANCHOR_FEATURE,
            "standardizer": result.dataset.scaler.as_meta(),
        },
        "opset": OPSET,
        "training": {
            "config": config.as_meta(),
            "rows": rows,
            "train_days": [int(result.dataset.train_days[0]), int(result.dataset.train_days[-1])],
            "validation_days": [int(result.dataset.val_days[0]), int(result.dataset.val_days[-1])],
            "epochs_run": list(result.epochs_run),  # per member
            "seconds": round(result.seconds, 1),
        },
        "validation": result.validation,
        "export": exported.as_meta(),
        "libraries": library_versions(),
    }
    written = store.write(KIND, symbol, {MODEL_FILE: exported.model}, meta)
    stored = store.load(KIND, symbol, written.version)
    probe = np.zeros((2, config.window, len(FEATURE_NAMES)), np.float32)
    if not np.isfinite(onnx_session(stored.model).run(["y"], {"x": probe})[0]).all():
        raise MambaExportError(
            f"{stored.path / MODEL_FILE}: non-finite outputs on the warm-up batch"
        )
    store.promote(KIND, symbol, written.version)
    return written
