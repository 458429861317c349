"""The PINN as the server holds it: one onnxruntime session per version, checked, hot-swapped.

`load_pinn` opens a version once (sha256 verified by the store, interface and a warm-up
batch checked). `ModelHolder` keeps the version in service and, off the request path, swaps
in the one `CURRENT` names when it changes. A caller that took `holder.current` keeps that
object for its whole call, so in-flight calls finish on the session they started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from shared.artifact_store import ArtifactError, ArtifactStore
from shared.pinn_graph import COLUMNS, OUTPUTS, onnx_session
from shared.validation import Interval

log = logging.getLogger(__name__)
KIND, NAME = "pinn", "default"
DOMAIN_FIELDS = ("moneyness", "tau", "volatility", "rate", "dividend_yield")
ROW_ALIGNMENT = 4
SPOT, STRIKE = COLUMNS.index("spot"), COLUMNS.index("strike")
STRIKE_SEEN = 100.0
# Price, theta, vega and rho are in currency; delta is a ratio; gamma is per unit of spot.
SCALES_WITH_STRIKE = [OUTPUTS.index(name) for name in ("price", "theta", "vega", "rho")]


class ModelCheckError(RuntimeError):
    """A stored version opened but failed the server's own checks."""


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


def load_pinn(store: ArtifactStore, version: str | None = None) -> LoadedModel:
    """Open and check one version (the promoted one by default); raise if it is not servable."""
    artifact = store.load(KIND, NAME, version)
    try:
        session = onnx_session(artifact.model)
    except Exception as error:  # onnxruntime raises its own assorted types for a bad graph
        raise ModelCheckError(
            f"{artifact.path}: onnxruntime cannot open model.onnx: {error}"
        ) from error
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


class NoModel(RuntimeError):
    """No servable version has been loaded yet."""


class ModelHolder:
    """The model in service (None until one loads), and the watcher that swaps in new versions."""

    def __init__(
        self, store: ArtifactStore, on_swap: Callable[[LoadedModel], None] = lambda _: None
    ) -> None:
        self.store = store
        self._current: LoadedModel | None = None
        self.refused: set[str] = set()
        self._on_swap = on_swap

    @property
    def current(self) -> LoadedModel:
        if self._current is None:
            raise NoModel(f"no servable {KIND}/{NAME} model in {self.store.root} yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    async def watch(self, interval: float) -> None:
        """Poll CURRENT every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.reload_if_promoted()

    async def reload_if_promoted(self) -> None:
        serving = self._current.version if self._current else None
        try:
            version = await asyncio.to_thread(self.store.current_version, KIND, NAME)
        except ArtifactError as error:
            log.warning("cannot read the promoted version: %s", error)
            return
        if version == serving or version in self.refused:
            return
        try:
            model = await asyncio.to_thread(load_pinn, self.store, version)
        except (ArtifactError, ModelCheckError) as error:
            self.refused.add(version)
            log.error("refused %s/%s/%s, still serving %s: %s", KIND, NAME, version, serving, error)
            return
        self._current = model
        self._on_swap(model)
        log.info("serving %s/%s/%s (before: %s)", KIND, NAME, model.version, serving or "none")
