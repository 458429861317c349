"""Latency of the committed PINN (price + five Greeks) in onnxruntime, one thread, against the
vectorised numpy closed form measured in the same run on the same inputs.

    .venv/bin/python bench/pinn_latency.py [--models models]

Prints, per batch size, the time per call and per option of both, and their ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from shared.artifact_store import ArtifactStore
from shared.black_scholes import black_scholes
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import OUTPUTS
from timing import best_seconds, machine
from trainer.pinn.domain import sample_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    args = parser.parse_args()
    artifact = ArtifactStore(args.models).load("pinn", "default")
    session = onnx_session(artifact.model)
    outputs = list(OUTPUTS)
    print(f"model pinn/default/{artifact.version}; machine: {machine()}")
    print(
        "| batch | onnxruntime per call | per option | numpy closed form per call | per option | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (1, 64, 1024, 10_000):
        x = sample_inputs(np.random.default_rng(n), n)
        x32 = x.astype(np.float32)
        onnx = best_seconds(lambda x32=x32: session.run(outputs, {"x": x32}))
        closed = best_seconds(lambda x=x: black_scholes(*x.T))
        print(
            f"| {n:,} | {onnx * 1e6:,.1f} us | {onnx / n * 1e9:,.0f} ns | {closed * 1e6:,.1f} us "
            f"| {closed / n * 1e9:,.0f} ns | {onnx / closed:.2f} |"
        )


if __name__ == "__main__":
    main()
