"""Speed of the float64 Black-Scholes reference against QuantLib, measured in the same run.

    .venv/bin/python bench/black_scholes.py

Prints nanoseconds per option (price and all five Greeks) for our vectorised numpy code at
several batch sizes, and for QuantLib's BlackCalculator called once per option, the
baseline; `speed-up` is QuantLib's time over ours.
"""

from __future__ import annotations

import numpy as np
import QuantLib as ql  # noqa: N813

from shared.black_scholes import black_scholes
from timing import best_seconds, machine


def random_inputs(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    strike = rng.uniform(50.0, 150.0, n)
    return {
        "is_put": rng.integers(0, 2, n).astype(float),
        "spot": strike * rng.uniform(0.5, 2.0, n),
        "strike": strike,
        "tau": rng.uniform(1 / 365, 3.0, n),
        "rate": rng.uniform(-0.01, 0.10, n),
        "volatility": rng.uniform(0.05, 1.0, n),
        "dividend_yield": rng.uniform(0.0, 0.05, n),
    }


def quantlib_all_greeks(inputs: dict[str, np.ndarray]) -> None:
    for put, s, k, t, r, sigma, q in zip(*inputs.values(), strict=True):
        calc = ql.BlackCalculator(
            ql.PlainVanillaPayoff(ql.Option.Put if put else ql.Option.Call, k),
            s * np.exp((r - q) * t),
            sigma * np.sqrt(t),
            np.exp(-r * t),
        )
        calc.value(), calc.delta(s), calc.gamma(s), calc.theta(s, t), calc.vega(t), calc.rho(t)


def main() -> None:
    rng = np.random.default_rng(0)
    baseline_inputs = random_inputs(1024, rng)
    baseline = best_seconds(lambda: quantlib_all_greeks(baseline_inputs)) / 1024 * 1e9
    print(f"machine: {machine()}; numpy {np.__version__}")
    print("| implementation | batch | ns per option | speed-up vs QuantLib |")
    print("|---|---:|---:|---:|")
    print(f"| QuantLib BlackCalculator, one call per option | 1024 | {baseline:,.0f} | 1.0 |")
    for n in (1, 1024, 100_000):
        inputs = random_inputs(n, rng)
        ours = best_seconds(lambda inputs=inputs: black_scholes(**inputs)) / n * 1e9
        print(f"| shared.black_scholes (numpy) | {n:,} | {ours:,.0f} | {baseline / ours:,.1f} |")


if __name__ == "__main__":
    main()
