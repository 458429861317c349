"""How the uncached PriceOption p50 grows with the size of the model's graph.

    .venv/bin/python bench/graph_size.py [--seconds 3] [--rounds 3] [--pin]

pricing-server itself serves stand-in graphs with the PINN's interface: a MatMul, K Muls, a
Transpose, a Split and six Squeezes (K + 9 nodes; their prices mean nothing), each from its
own temporary model folder, next to the committed PINN. Each is driven at concurrency 1 with
options it has not seen, in turns with the no-op server, and the medians over the rounds are
printed against the no-op server's. It says how small a graph would have to be for a goal
on the uncached p50 on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from server.model import KIND, NAME
from server_latency import REPO, free_port, load, noop, place, pricing, running
from shared.artifact_store import MODEL_FILE, ArtifactStore
from shared.pinn_graph import COLUMNS, OUTPUTS
from timing import machine

MULS = (1, 30, 60, 116)  # 116 + 9: the committed PINN's 125 nodes once onnxruntime optimised it


def stand_in(muls: int) -> bytes:
    """A graph with the PINN's input and outputs and `muls` + 9 nodes."""
    weights = [numpy_helper.from_array(np.full((len(COLUMNS), 6), 0.01, np.float32), "w"),
               numpy_helper.from_array(np.array([0], np.int64), "axis")]  # fmt: skip
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h0"])]
    for i in range(muls):
        weights.append(numpy_helper.from_array(np.full((1, 6), 1.0001, np.float32), f"c{i}"))
        nodes.append(helper.make_node("Mul", [f"h{i}", f"c{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Transpose", [f"h{muls}"], ["t"], perm=[1, 0]))
    nodes.append(helper.make_node("Split", ["t"], [f"s{j}" for j in range(6)], num_outputs=6))
    nodes += [helper.make_node("Squeeze", [f"s{j}", "axis"], [n]) for j, n in enumerate(OUTPUTS)]
    graph = helper.make_graph(
        nodes, "stand_in",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", len(COLUMNS)])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"]) for n in OUTPUTS], weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="turns of all the servers")
    parser.add_argument("--pin", action="store_true", help="servers and client on separate cores")
    args = parser.parse_args()
    server_cores, placement = place(parser, args.pin)
    print(f"machine: {machine()}; every load run {args.seconds:g} s; {args.rounds} rounds; "
          f"{placement}\n")  # fmt: skip
    pinn = ArtifactStore(REPO / "models").load(KIND, NAME)
    seeds = itertools.count(1)
    single = {"concurrency": 1, "processes": 1, "channels": 1}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as servers:
        folders = {"the committed PINN": REPO / "models"}
        for muls in MULS:
            folder = Path(scratch) / f"muls-{muls}"
            graph = stand_in(muls)
            store = ArtifactStore(folder)
            written = store.write(KIND, NAME, {MODEL_FILE: graph}, pinn.written_meta)
            store.promote(KIND, NAME, written.version)
            folders[f"stand-in, {len(onnx.load_from_string(graph).graph.node)} nodes"] = folder
        ports = {"no-op server": free_port()}
        servers.enter_context(running(noop(ports["no-op server"]), ports["no-op server"], False,
                                      server_cores))  # fmt: skip
        for label, folder in folders.items():
            ports[label] = free_port()
            servers.enter_context(
                running(pricing(ports[label], models=folder), ports[label], True, server_cores)
            )
        p50 = {label: [] for label in ports}
        for _ in range(args.rounds):
            for label, port in ports.items():
                p50[label].append(load(port, args.seconds, seed=next(seeds), **single)["p50"])
    base = float(np.median(p50["no-op server"]))
    print("| server, uncached PriceOption at concurrency 1 | p50 ms | vs no-op |")
    print("|---|---:|---:|")
    for label, values in p50.items():
        print(f"| {label} | {np.median(values):.3f} | {np.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
