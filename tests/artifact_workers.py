"""Processes that hammer an ArtifactStore, for tests/test_artifact_store.py.

Run as a script (`python artifact_workers.py loop ROOT KIND NAME`) it writes and promotes
versions forever, printing each promoted version, until it is killed.
"""

import hashlib
import random
import sys
import time
from pathlib import Path

from shared.artifact_store import MODEL_FILE, ArtifactError, ArtifactStore


def payload(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(64 * 1024, 512 * 1024))


def write_rounds(root: str, kind: str, name: str, rounds: int, seed: int) -> list[tuple[str, str]]:
    """Write and promote `rounds` versions; return (version, sha256 of model.onnx) of each."""
    store, rng = ArtifactStore(root), random.Random(seed)
    written = []
    for round_ in range(rounds):
        data = payload(rng)
        artifact = store.write(kind, name, {MODEL_FILE: data}, {"writer": seed, "round": round_})
        store.promote(kind, name, artifact.version)
        written.append((artifact.version, hashlib.sha256(data).hexdigest()))
    return written


def read_until(root: str, kind: str, name: str, stop_file: str) -> tuple[int, list[str]]:
    """Load the promoted version until stop_file exists; return (loads, errors seen)."""
    store, loads, errors = ArtifactStore(root), 0, []
    while not Path(stop_file).exists():
        try:
            store.load(kind, name)
            loads += 1
        except ArtifactError as error:
            errors.append(f"{type(error).__name__}: {error}")
        time.sleep(0.001)
    return loads, errors


def write_forever(root: str, kind: str, name: str) -> None:
    store, rng = ArtifactStore(root), random.Random()
    print("ready", flush=True)
    while True:
        version = store.write(kind, name, {MODEL_FILE: payload(rng)}, {}).version
        store.promote(kind, name, version)
        print(version, flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    assert command == "loop", command
    write_forever(*args)
