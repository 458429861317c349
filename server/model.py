"""The PINN as the server holds it: one checked onnxruntime session per version.

`load_pinn` opens a version once (its sha256 verified by the store; interface and a warm-up
batch checked here); server/hot_reload.py's `ModelHolder` keeps it in service and swaps in
the next promoted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from server.hot_reload import ModelCheckError, open_session
from shared.artifact_store import Artifact
from shared.pinn_graph import COLUMNS, OUTPUTS
from shared.validation import Interval

KIND, NAME = "pinn", "default"
DOMAIN_FIELDS = ("moneyness", "tau", "volatility", "rate", "dividend_yield")
ROW_ALIGNMENT = 4
SPOT, STRIKE = COLUMNS.index("spot"), COLUMNS.index("strike")
STRIKE_SEEN = 100.0
# Price, theta, vega and rho are in currency; delta is a ratio; gamma is per unit of spot.
SCALES_WITH_STRIKE = [OUTPUTS.index(name) for name in ("price", "theta", "vega", "rho")]


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    session: ort.InferenceSession
    domain: dict[str, Interval]  # served ranges, from meta.json

    @property
    def cache_tag(self) -> str:
        """Names this exact model in cache keys, even if a version name were ever reused."""
        return f"{self.version}-{self.sha256[:12]}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Rows of the ONNX input -> [len(OUTPUTS), N] float64.

        onnxruntime's GEMM handles the last rows of a batch that is not a multiple of 4 with
        another kernel, whose float32 rounding differs. Padding to a multiple of 4 makes each
        row's answer the same bits whatever batch it was coalesced into (measured).
        """
        n = len(x)
        # Prices are homogeneous in (spot, strike): the graph sees strike 100, so float32 never
        # meets S K products beyond its range (a spot of 1.8e19 overflowed: found by hypothesis).
        scale = x[:, STRIKE] / STRIKE_SEEN
        padded = np.empty((n + -n % ROW_ALIGNMENT, x.shape[1]), dtype=np.float32)
        padded[:n] = x
        padded[:n, SPOT] = x[:, SPOT] / scale
        padded[:n, STRIKE] = STRIKE_SEEN
        padded[n:] = padded[:1]  # any valid row: its outputs are dropped
        outputs = np.asarray(self.session.run(list(OUTPUTS), {"x": padded}), dtype=np.float64)[
            :, :n
        ]
        outputs[SCALES_WITH_STRIKE] *= scale
        outputs[OUTPUTS.index("gamma")] /= scale
        return outputs


def _domain(meta: dict[str, Any]) -> dict[str, Interval]:
    try:
        ranges = {name: meta["domain"][name] for name in DOMAIN_FIELDS}
        return {name: Interval(float(low), float(high)) for name, (low, high) in ranges.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise ModelCheckError(f"meta.json has no usable domain: {error!r}") from error


def _warm_up_rows(domain: dict[str, Interval]) -> np.ndarray:
    """Calls and puts over the middle and the corners of the served domain."""
    rows = []
    for fraction in (0.0, 0.5, 1.0):
        at = {name: iv.low + fraction * (iv.high - iv.low) for name, iv in domain.items()}
        for is_put in (0.0, 1.0):
            rows.append(
                [
                    is_put,
                    100.0 * at["moneyness"],
                    100.0,
                    at["tau"],
                    at["rate"],
                    at["volatility"],
                    at["dividend_yield"],
                ]
            )
    return np.array(rows)


def load_pinn(artifact: Artifact) -> LoadedModel:
    """Open and check one verified version; raise ModelCheckError if it is not servable."""
    session = open_session(artifact)
    inputs = [(i.name, i.shape[-1]) for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [("x", len(COLUMNS))] or sorted(outputs) != sorted(OUTPUTS):
        raise ModelCheckError(
            f"{artifact.path}: interface {inputs} -> {outputs} is not the PINN contract"
        )
    model = LoadedModel(
        artifact.version,
        artifact.meta["files"]["model.onnx"]["sha256"],
        session,
        _domain(artifact.meta),
    )
    warm = model.run(_warm_up_rows(model.domain))
    if not np.isfinite(warm).all():
        raise ModelCheckError(f"{artifact.path}: non-finite outputs on the warm-up batch")
    return model
