"""Accuracy of an exported PINN: its ONNX graph in onnxruntime (float32) against the float64
Black-Scholes reference of `shared`, on random points of the domain plus a grid of its
corners and edges. `trainer evaluate --model pinn` and `trainer train` both use it.

The graph takes float32, so every point is first rounded to float32 and the reference is
evaluated at exactly the inputs the model saw. (Rounding a double input to float32 moves a
price by at most ~1e-7 K, far below the goals.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.black_scholes import black_scholes
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import run_model
from trainer.pinn.domain import DOMAIN, edge_grid, sample_inputs

# float32 carries 24 bits: a price of size P is known to about P * 2^-24. No-arbitrage checks
# allow 4 such ulps of the spot, so that rounding alone never counts as a violation.
FLOAT32_TOLERANCE = 4 * 2.0**-24


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    goal: float | None = None  # value must be <= goal

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else bool(self.value <= self.goal)


def _with_type(x: np.ndarray, is_put: float) -> np.ndarray:
    typed = x.copy()
    typed[:, 0] = is_put
    return typed


def strike_grid_violations(
    session: Any, rng: np.random.Generator, markets: int = 2000, strikes: int = 61
) -> tuple[int, int]:
    """Calls on a strike grid per market: (strike-monotonicity violations, convexity violations)."""
    base = sample_inputs(rng, markets).astype(np.float32).astype(np.float64)
    spot = base[:, 1:2]
    # Strikes spanning the whole moneyness range of the domain, for each market.
    ratios = np.linspace(1 / DOMAIN.moneyness[1], 1 / DOMAIN.moneyness[0], strikes)
    rows = np.repeat(base, strikes, axis=0)
    rows[:, 0] = 0.0
    rows[:, 2] = (spot * ratios).ravel()
    price = run_model(session, rows)["price"].reshape(markets, strikes)
    tolerance = FLOAT32_TOLERANCE * spot
    slope = np.diff(price, axis=1)
    curvature = np.diff(price, 2, axis=1)
    return int((slope > tolerance).sum()), int((curvature < -tolerance).sum())


def accuracy(model: bytes, points: int = 1_000_000, seed: int = 12345) -> list[Metric]:
    """The accuracy table; goals are those of the PINN issue and are never loosened here."""
    session = onnx_session(model)
    rng = np.random.default_rng(seed)
    x = (
        np.concatenate([sample_inputs(rng, points), edge_grid()])
        .astype(np.float32)
        .astype(np.float64)
    )
    is_put, spot, strike, tau, rate, volatility, q = x.T
    out = run_model(session, x)
    ref = black_scholes(*x.T)

    price_error = np.abs(out["price"] - ref.price) / strike
    priced = ref.price >= 1e-3 * strike
    relative = np.abs(out["price"][priced] - ref.price[priced]) / ref.price[priced]
    scaled = {  # each Greek's error made dimensionless by the scale its units ask for
        "delta": np.abs(out["delta"] - ref.delta),
        "gamma": np.abs(out["gamma"] - ref.gamma) * spot,
        "theta": np.abs(out["theta"] - ref.theta) / strike,
        "vega": np.abs(out["vega"] - ref.vega) / spot,
        "rho": np.abs(out["rho"] - ref.rho) / strike,
    }
    calls, puts = run_model(session, _with_type(x, 0.0)), run_model(session, _with_type(x, 1.0))
    spot_disc, strike_disc = spot * np.exp(-q * tau), strike * np.exp(-rate * tau)
    parity = np.abs(calls["price"] - puts["price"] - (spot_disc - strike_disc)) / strike
    lower = np.maximum(np.where(is_put == 1, strike_disc - spot_disc, spot_disc - strike_disc), 0.0)
    upper = np.where(is_put == 1, strike_disc, spot_disc)
    slack = FLOAT32_TOLERANCE * spot
    bound_violations = int(((out["price"] < lower - slack) | (out["price"] > upper + slack)).sum())
    monotone, convex = strike_grid_violations(session, rng)
    # Black-Scholes PDE in calendar time: theta + (r - q) S delta + sigma^2 S^2 gamma / 2 - r V = 0.
    pde = (
        np.abs(
            out["theta"]
            + (rate - q) * spot * out["delta"]
            + 0.5 * (volatility * spot) ** 2 * out["gamma"]
            - rate * out["price"]
        )
        / strike
    )

    return [
        Metric("points (random + edge grid)", float(len(x))),
        Metric("price max abs error / K", float(price_error.max()), 5e-5),
        Metric("price mean abs error / K", float(price_error.mean())),
        Metric("price mean rel error (price >= 1e-3 K)", float(relative.mean()), 1e-3),
        Metric("delta max abs error", float(scaled["delta"].max()), 1e-3),
        Metric("delta mean abs error", float(scaled["delta"].mean()), 1e-4),
        *(
            Metric(f"{name} {stat} abs error {unit}", float(getattr(np, stat)(scaled[name])))
            for name, unit in (("gamma", "x S"), ("theta", "/ K"), ("vega", "/ S"), ("rho", "/ K"))
            for stat in ("max", "mean")
        ),
        Metric("put-call parity max violation / K", float(parity.max()), 1e-6),
        Metric("price bound violations", float(bound_violations), 0.0),
        Metric("strike monotonicity violations", float(monotone), 0.0),
        Metric("strike convexity violations", float(convex), 0.0),
        Metric("PDE residual max / K", float(pde.max())),
        Metric("PDE residual mean / K", float(pde.mean())),
    ]


def format_table(metrics: list[Metric]) -> str:
    lines = ["| metric | value | goal | met |", "|---|---:|---:|:---:|"]
    for m in metrics:
        goal = "" if m.goal is None else f"<= {m.goal:g}"
        met = {None: "", True: "yes", False: "**NO**"}[m.passed]
        lines.append(f"| {m.name} | {m.value:.3g} | {goal} | {met} |")
    return "\n".join(lines)


def as_meta(metrics: list[Metric]) -> dict[str, Any]:
    return {m.name: {"value": m.value, "goal": m.goal, "met": m.passed} for m in metrics}


def error_plot(model: bytes, points: int = 400_000, seed: int = 7) -> bytes:
    """PNG: the worst price error / K over (moneyness, tau), maximised over the other inputs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors
    from matplotlib import pyplot as plt

    x = sample_inputs(np.random.default_rng(seed), points).astype(np.float32).astype(np.float64)
    error = np.abs(run_model(onnx_session(model), x)["price"] - black_scholes(*x.T).price) / x[:, 2]
    m_edges = np.linspace(*DOMAIN.moneyness, 61)
    t_edges = np.linspace(*DOMAIN.tau, 61)
    mi = np.clip(np.digitize(x[:, 1] / x[:, 2], m_edges) - 1, 0, 59)
    ti = np.clip(np.digitize(x[:, 3], t_edges) - 1, 0, 59)
    worst = np.full((60, 60), np.nan)
    np.fmax.at(worst, (ti, mi), error)
    figure, axes = plt.subplots(figsize=(7, 5), dpi=110)
    mesh = axes.pcolormesh(
        m_edges, t_edges, worst, norm=colors.LogNorm(vmin=1e-8, vmax=1e-4), cmap="viridis"
    )
    figure.colorbar(mesh, ax=axes, label="max |price error| / K (over r, sigma, q, call/put)")
    axes.set_xlabel("moneyness S / K")
    axes.set_ylabel("tau (years)")
    axes.set_title(f"PINN vs Black-Scholes, onnxruntime float32 (max {np.nanmax(worst):.2e} K)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
