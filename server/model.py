"""The PINN as the server holds it: one checked onnxruntime session per version.

`load_pinn` opens a version once (its sha256 verified by the store; interface and a warm-up
batch checked here); server/hot_reload.py's `ModelHolder` keeps it in service and swaps in
the next promoted one.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from server.hot_reload import ModelCheckError, open_session
from server.quotes import QUOTE, Contract, Quote, contract_rows, quotes_of
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
assert OUTPUTS == ("price", "delta", "gamma", "theta", "vega", "rho")  # OneContractRun's order


class OneContractRun:
    """One contract's call and put through input and output buffers bound to the session once.

    A lone PriceOption is the server's commonest run. Packing its rows with struct into bound
    buffers takes it through onnxruntime without a numpy call: between gRPC calls numpy's
    code is out of the CPU caches, and `LoadedModel.run`'s dozen numpy calls cost ~60 us of
    a ~660 us call end to end (measured). Bound once, the run itself is no slower either:
    37 us warm against 39 us through `session.run`. The arithmetic is `LoadedModel.run`'s,
    operation for operation, so the answers are the same bits (tests/test_server_model.py).
    """

    _ROWS = struct.Struct(f"<{ROW_ALIGNMENT * len(COLUMNS)}f")
    _COLUMN = struct.Struct(f"<{ROW_ALIGNMENT}f")

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._rows = np.zeros((ROW_ALIGNMENT, len(COLUMNS)), np.float32)
        self._outputs = [np.zeros(ROW_ALIGNMENT, np.float32) for _ in OUTPUTS]
        self._binding = session.io_binding()
        self._binding.bind_input(
            "x", "cpu", 0, np.float32, self._rows.shape, self._rows.ctypes.data
        )
        for name, buffer in zip(OUTPUTS, self._outputs, strict=True):
            self._binding.bind_output(name, "cpu", 0, np.float32, buffer.shape, buffer.ctypes.data)
        self._rows_bytes = memoryview(self._rows).cast("B")
        self._outputs_bytes = [memoryview(b).cast("B") for b in self._outputs]
        self._lock = threading.Lock()  # the buffers serve one run at a time

    def quote(self, contract: Contract) -> Quote:
        spot, strike, *market = contract
        scale = strike / STRIKE_SEEN
        call = (0.0, spot / scale, STRIKE_SEEN, *market)
        put = (1.0, *call[1:])
        with self._lock:
            # Rows padded to ROW_ALIGNMENT with copies of the call, as `LoadedModel.run` does.
            self._ROWS.pack_into(self._rows_bytes, 0, *call, *put, *call, *call)
            self._session.run_with_iobinding(self._binding)
            price, delta, gamma, theta, vega, rho = (
                self._COLUMN.unpack_from(b) for b in self._outputs_bytes
            )
        return QUOTE.pack(*(
            value
            for i in range(2)
            for value in (price[i] * scale, delta[i], gamma[i] / scale, theta[i] * scale,
                          vega[i] * scale, rho[i] * scale)
        ))  # fmt: skip


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    session: ort.InferenceSession
    domain: dict[str, Interval]  # served ranges, from meta.json
    one_contract: OneContractRun  # over this same session

    @property
    def cache_tag(self) -> str:
        """Names this exact model in cache keys, even if a version name were ever reused."""
        return f"{self.version}-{self.sha256[:12]}"

    def quotes(self, contracts: Sequence[Contract]) -> list[Quote]:
        """The quote (call and put) of each contract, in one onnxruntime run."""
        if len(contracts) == 1:
            return [self.one_contract.quote(contracts[0])]
        return quotes_of(self.run(contract_rows(contracts)))

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
        OneContractRun(session),
    )
    rows = _warm_up_rows(model.domain)
    warm = model.run(rows)
    # The single-contract path too, which also has its own first run done here.
    lone = np.frombuffer(model.quotes([tuple(rows[0, 1:])])[0], "<f8")
    if not (np.isfinite(warm).all() and np.isfinite(lone).all()):
        raise ModelCheckError(f"{artifact.path}: non-finite outputs on the warm-up batch")
    return model
