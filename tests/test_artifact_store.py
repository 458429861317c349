"""The artifact store under parallel writers, killed writers and corrupted files (seed P0-3)."""

import hashlib
import multiprocessing
import random
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_workers import read_until, write_rounds
from shared.artifact_store import (
    CURRENT_FILE,
    MODEL_FILE,
    ArtifactNotFoundError,
    ArtifactStore,
    CorruptArtifactError,
)
from shared.atomic_files import TEMP_PREFIX

WORKERS = Path(__file__).with_name("artifact_workers.py")
spawn = multiprocessing.get_context("spawn")


def leftovers(store: ArtifactStore, kind: str, name: str) -> list[str]:
    return [e.name for e in store.model_dir(kind, name).iterdir() if e.name.startswith(TEMP_PREFIX)]


def test_write_promote_load_round_trip(tmp_path):
    store = ArtifactStore(tmp_path)
    files = {MODEL_FILE: b"onnx bytes", "error.png": b"png bytes"}
    written = store.write("pinn", "default", files, {"domain": {"tau": [0.0027, 3.0]}})
    assert written.version == "v0001"
    with pytest.raises(ArtifactNotFoundError, match="no promoted version"):
        store.load("pinn", "default")

    store.promote("pinn", "default", "v0001")
    second = store.write("pinn", "default", {MODEL_FILE: b"newer"}, {})
    assert store.versions("pinn", "default") == ["v0001", "v0002"]
    assert store.current_version("pinn", "default") == "v0001"  # written is not promoted

    loaded = store.load("pinn", "default")
    assert (loaded.version, loaded.files) == ("v0001", files)
    assert loaded.meta["domain"] == {"tau": [0.0027, 3.0]}
    assert loaded.meta["files"][MODEL_FILE]["sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert {"format_version", "kind", "name", "version", "created"} <= loaded.meta.keys()
    assert store.load("pinn", "default", second.version).model == b"newer"
    assert (tmp_path / "pinn" / "default" / CURRENT_FILE).read_text() == "v0001\n"
    # Readable by a server running as another user.
    assert (tmp_path / "pinn" / "default" / CURRENT_FILE).stat().st_mode & 0o777 == 0o644
    assert loaded.path.stat().st_mode & 0o777 == 0o755


def test_update_meta_adds_keys_atomically_and_keeps_the_files(tmp_path):
    store = ArtifactStore(tmp_path)
    written = store.write("pinn", "default", {MODEL_FILE: b"model"}, {"accuracy": {"old": 1}})
    updated = store.update_meta("pinn", "default", written.version, {"accuracy": {"new": 2}})
    assert updated.meta["accuracy"] == {"new": 2}
    assert store.load("pinn", "default", written.version).meta == updated.meta
    assert leftovers(store, "pinn", "default") == []
    with pytest.raises(ValueError, match="store's own keys: files"):
        store.update_meta("pinn", "default", written.version, {"files": {}})


def test_rejects_unsafe_names_and_store_keys(tmp_path):
    store = ArtifactStore(tmp_path)
    for kind, name in [("pinn", "../escape"), ("pinn", ".hidden"), ("other", "default")]:
        with pytest.raises(ValueError, match="invalid"):
            store.write(kind, name, {MODEL_FILE: b"x"}, {})
    with pytest.raises(ValueError, match="store's own keys: version"):
        store.write("pinn", "default", {MODEL_FILE: b"x"}, {"version": "v9"})
    with pytest.raises(ValueError, match=r"needs a model\.onnx"):
        store.write("pinn", "default", {"weights.bin": b"x"}, {})
    with pytest.raises(ValueError, match="invalid version"):
        store.load("pinn", "default", "../../etc")
    with pytest.raises(ArtifactNotFoundError, match="no version v0042"):
        store.promote("pinn", "default", "v0042")


@pytest.mark.parametrize("damage", ["truncate", "flip_bit", "delete"])
def test_damaged_model_file_is_refused_with_its_path(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    good = store.write("mamba", "AAPL", {MODEL_FILE: bytes(range(256)) * 64}, {})
    store.promote("mamba", "AAPL", good.version)
    bad = store.write("mamba", "AAPL", {MODEL_FILE: bytes(range(256)) * 64}, {})
    model_path = bad.path / MODEL_FILE
    data = bytearray(model_path.read_bytes())
    if damage == "truncate":
        model_path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_bit":
        data[1234] ^= 0x10
        model_path.write_bytes(bytes(data))
    else:
        model_path.unlink()

    with pytest.raises(CorruptArtifactError) as raised:
        store.load("mamba", "AAPL", bad.version)
    assert str(model_path) in str(raised.value)
    with pytest.raises(CorruptArtifactError):
        store.promote("mamba", "AAPL", bad.version)
    assert store.current_version("mamba", "AAPL") == good.version


def test_damaged_meta_is_refused_with_its_path(tmp_path):
    store = ArtifactStore(tmp_path)
    version = store.write("pinn", "default", {MODEL_FILE: b"x"}, {})
    meta_path = version.path / "meta.json"
    for damage in [
        b"{not json",
        b"[]",
        b'{"kind": "pinn", "name": "default", "version": "v0009", "files": {}}',
    ]:
        meta_path.write_bytes(damage)
        with pytest.raises(CorruptArtifactError, match=str(meta_path)):
            store.load("pinn", "default", version.version)


def test_partial_versions_are_never_listed_and_are_cleaned_up(tmp_path):
    store = ArtifactStore(tmp_path)
    model_dir = store.model_dir("pinn", "default")
    (model_dir / f"{TEMP_PREFIX}abc").mkdir(parents=True)
    (model_dir / f"{TEMP_PREFIX}abc" / MODEL_FILE).write_bytes(b"half")
    (model_dir / f"{TEMP_PREFIX}CURRENT-xyz").write_bytes(b"v00")
    (model_dir / "v0007").mkdir()  # no meta.json: not a version
    assert store.versions("pinn", "default") == []

    written = store.write("pinn", "default", {MODEL_FILE: b"whole"}, {})
    assert written.version == "v0008"  # never reuses a number that was ever taken
    assert store.versions("pinn", "default") == ["v0008"]
    assert leftovers(store, "pinn", "default") == []


def test_eight_parallel_writers_fifty_rounds(tmp_path):
    """4 processes on one model, 4 on models of their own, a reader throughout."""
    rounds = 50
    targets = [("pinn", "default")] * 4 + [("mamba", f"SYM{i}") for i in range(4)]
    stop = tmp_path / "stop"
    store = ArtifactStore(tmp_path / "models")
    root = str(store.root)
    store.promote("pinn", "default", store.write("pinn", "default", {MODEL_FILE: b"0"}, {}).version)

    with spawn.Pool(len(targets) + 1) as pool:
        reader = pool.apply_async(read_until, (root, "pinn", "default", str(stop)))
        writers = [
            pool.apply_async(write_rounds, (root, kind, name, rounds, seed))
            for seed, (kind, name) in enumerate(targets)
        ]
        results = [w.get(timeout=300) for w in writers]
        stop.touch()
        loads, errors = reader.get(timeout=60)

    assert errors == []
    assert loads > 0
    for (kind, name), written in zip(targets, results, strict=True):
        for version, sha in written:
            artifact = store.load(kind, name, version)
            assert hashlib.sha256(artifact.model).hexdigest() == sha
    shared_versions = [version for result in results[:4] for version, _ in result]
    assert len(set(shared_versions)) == 4 * rounds  # no two writers got the same version
    assert store.versions("pinn", "default") == ["v0001", *sorted(shared_versions)]
    assert store.load("pinn", "default").version in shared_versions
    for i, result in enumerate(results[4:]):
        assert store.versions("mamba", f"SYM{i}") == [v for v, _ in result]
        assert store.current_version("mamba", f"SYM{i}") == result[-1][0]
    assert all(leftovers(store, kind, name) == [] for kind, name in targets)


def test_writer_killed_at_random_points(tmp_path):
    """SIGKILL a writer 50 times mid-loop: CURRENT stays whole, temp files go on the next write."""
    store = ArtifactStore(tmp_path / "models")
    root = str(store.root)
    store.promote("pinn", "default", store.write("pinn", "default", {MODEL_FILE: b"0"}, {}).version)
    rng = random.Random(20261126)
    stop = tmp_path / "stop"
    checked: set[str] = set()
    kills_that_left_temp_files = 0

    with spawn.Pool(1) as pool:
        reader = pool.apply_async(read_until, (root, "pinn", "default", str(stop)))
        for _ in range(50):
            before = store.current_version("pinn", "default")
            existing = set(store.versions("pinn", "default"))
            writer = subprocess.Popen(
                [sys.executable, str(WORKERS), "loop", root, "pinn", "default"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert writer.stdout.readline() == "ready\n"
            try:
                writer.wait(timeout=rng.uniform(0.0, 0.08))
            except subprocess.TimeoutExpired:
                writer.kill()
            writer.wait()
            reported = writer.stdout.read().split()
            writer.stdout.close()

            # The writer may have promoted its newest whole version without reporting it. (Not
            # always last + 1: an earlier writer may have died between rename and promote.)
            last = reported[-1] if reported else before
            new = set(store.versions("pinn", "default")) - existing
            allowed = {last, max(new, key=lambda v: int(v[1:]))} if new else {last}
            assert store.current_version("pinn", "default") in allowed
            assert store.load("pinn", "default").version in allowed
            for version in set(store.versions("pinn", "default")) - checked:
                store.load("pinn", "default", version)
                checked.add(version)
            kills_that_left_temp_files += bool(leftovers(store, "pinn", "default"))

        stop.touch()
        loads, errors = reader.get(timeout=60)

    store.write("pinn", "default", {MODEL_FILE: b"after"}, {})
    assert leftovers(store, "pinn", "default") == []
    assert errors == []
    assert loads > 0
    # Evidence that the kills landed mid-write, not only between writes.
    assert kills_that_left_temp_files > 0
