"""Versioned model artifacts: `<root>/<kind>/<name>/<version>/` plus a `CURRENT` pointer.

    models/pinn/default/v0003/model.onnx
    models/pinn/default/v0003/meta.json      # sha256 of every file, written last
    models/pinn/default/CURRENT               # one line: the promoted version

The protocol (DESIGN.md section 3), which makes parallel trainers and killed writers safe:
- A version is staged in a hidden `.tmp-*` folder beside the versions: each file written
  and fsynced, `meta.json` last, then the folder is renamed to its version name in one
  atomic step. A version therefore exists whole or not at all.
- `CURRENT` is replaced atomically, and only after the version was read back and verified.
- One cross-process lock per `<kind>/<name>` serialises writers of that model; different
  models never wait for each other. All writers hold the lock, so a `.tmp-*` entry seen
  while holding it was left by a writer that died, and is removed.
- Readers take no lock. The files of a version never change once renamed into place (only
  `meta.json` may be replaced atomically, to add later measurements), and a reader checks
  every file against the sha256 in `meta.json` before handing it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from shared.atomic_files import DIR_MODE, TEMP_PREFIX, fsync_dir, replace_atomically, write_durably

FORMAT_VERSION = 1
KINDS = ("pinn", "mamba")
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
# A trainer's resumable state, in the model's folder beside its versions; never published
# (git and Docker ignore it). The Mamba trainer names one per network after it.
CHECKPOINT_FILE = "training-checkpoint.npz"
# Keys of meta.json that the store itself writes; a caller's meta may not set them.
STORE_KEYS = frozenset({"format_version", "kind", "name", "version", "created", "files"})

# Ticker-like names (BRK.B, ^GSPC, ES=F); never a path separator or a leading dot.
MODEL_NAME = re.compile(r"[A-Za-z0-9^][A-Za-z0-9^._=-]{0,63}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"v(\d{4,})")


class ArtifactError(Exception):
    """Base of the store's errors."""


class ArtifactNotFoundError(ArtifactError, LookupError):
    """No such model, version or promoted version."""


class CorruptArtifactError(ArtifactError):
    """A file of a version is missing, unreadable or fails its checksum; the message names it."""


@dataclass(frozen=True)
class Artifact:
    """One verified version of a model: its metadata and the exact bytes that were checked."""

    kind: str
    name: str
    version: str
    path: Path
    meta: Mapping[str, Any]
    files: Mapping[str, bytes]

    @property
    def model(self) -> bytes:
        return self.files[MODEL_FILE]

    @property
    def written_meta(self) -> dict[str, Any]:
        """The metadata its writer gave, without the store's own keys: what `write` takes back."""
        return {key: value for key, value in self.meta.items() if key not in STORE_KEYS}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_bytes(meta: Mapping[str, Any]) -> bytes:
    return json.dumps(meta, indent=2).encode() + b"\n"


def _require(pattern: re.Pattern[str], what: str, value: str) -> None:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: must match {pattern.pattern}")


class ArtifactStore:
    """The model folder shared by trainers (writers) and servers (readers)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def kind_dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"invalid kind {kind!r}: must be one of {', '.join(KINDS)}")
        return self.root / kind

    def model_dir(self, kind: str, name: str) -> Path:
        kind_dir = self.kind_dir(kind)
        _require(MODEL_NAME, "model name", name)
        return kind_dir / name

    def lock(self, kind: str, name: str) -> FileLock:
        """The cross-process lock that serialises writers of one model."""
        model_dir = self.model_dir(kind, name)
        model_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(model_dir / LOCK_FILE)

    def versions(self, kind: str, name: str) -> list[str]:
        """Whole versions of a model, oldest first; staging folders are never listed."""
        model_dir = self.model_dir(kind, name)
        if not model_dir.is_dir():
            return []
        found = [
            (int(match.group(1)), entry.name)
            for entry in model_dir.iterdir()
            if (match := _VERSION.fullmatch(entry.name)) and (entry / META_FILE).is_file()
        ]
        return [version for _, version in sorted(found)]

    def promoted(self, kind: str) -> list[str]:
        """Names of `kind` that have a promoted version (a CURRENT file), sorted."""
        kind_dir = self.kind_dir(kind)
        if not kind_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in kind_dir.iterdir()
            if MODEL_NAME.fullmatch(entry.name) and (entry / CURRENT_FILE).is_file()
        )

    def current_version(self, kind: str, name: str) -> str:
        """The promoted version named by CURRENT."""
        current = self.model_dir(kind, name) / CURRENT_FILE
        try:
            version = current.read_text().strip()
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"{kind}/{name} has no promoted version ({current})"
            ) from None
        if not _VERSION.fullmatch(version):
            raise CorruptArtifactError(f"{current}: {version!r} is not a version name")
        return version

    def load(self, kind: str, name: str, version: str | None = None) -> Artifact:
        """Read and verify one version (the promoted one when version is None)."""
        version = version or self.current_version(kind, name)
        _require(_VERSION, "version", version)
        path = self.model_dir(kind, name) / version
        meta_path = path / META_FILE
        try:
            meta = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"{kind}/{name} has no version {version} ({path})"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptArtifactError(f"{meta_path}: not valid JSON ({error})") from error
        whole = isinstance(meta, dict) and isinstance(meta.get("files"), dict)
        identity = (meta.get("kind"), meta.get("name"), meta.get("version")) if whole else None
        if identity != (kind, name, version):
            raise CorruptArtifactError(f"{meta_path}: does not describe {kind}/{name}/{version}")
        files = {f: self._read_verified(path / f, entry) for f, entry in meta["files"].items()}
        return Artifact(kind=kind, name=name, version=version, path=path, meta=meta, files=files)

    def write(
        self, kind: str, name: str, files: Mapping[str, bytes], meta: Mapping[str, Any]
    ) -> Artifact:
        """Store a new version (not promoted) and return it; files must include model.onnx."""
        if MODEL_FILE not in files:
            raise ValueError(f"an artifact needs a {MODEL_FILE}")
        for filename in files:
            _require(_FILE, "file name", filename)
            if filename == META_FILE:
                raise ValueError(f"{META_FILE} is written by the store, from `meta`")
        if clash := STORE_KEYS & meta.keys():
            raise ValueError(f"meta may not set the store's own keys: {', '.join(sorted(clash))}")

        model_dir = self.model_dir(kind, name)
        with self.lock(kind, name):
            self._remove_leftovers(model_dir)
            version = self._next_version(model_dir)
            full_meta = {
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "name": name,
                "version": version,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": {f: {"sha256": _sha256(d), "bytes": len(d)} for f, d in files.items()},
                **meta,
            }
            staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=model_dir))
            try:
                staging.chmod(DIR_MODE)
                for filename, data in files.items():
                    write_durably(staging / filename, data)
                write_durably(staging / META_FILE, _meta_bytes(full_meta))
                fsync_dir(staging)
                os.rename(staging, model_dir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(model_dir)
        return Artifact(kind, name, version, model_dir / version, full_meta, dict(files))

    def promote(self, kind: str, name: str, version: str) -> Artifact:
        """Point CURRENT at `version` after verifying it; a corrupt version is refused."""
        with self.lock(kind, name):
            artifact = self.load(kind, name, version)
            replace_atomically(self.model_dir(kind, name) / CURRENT_FILE, f"{version}\n".encode())
        return artifact

    def update_meta(
        self, kind: str, name: str, version: str, updates: Mapping[str, Any]
    ) -> Artifact:
        """Merge `updates` into a version's meta.json, atomically (a later evaluation, say)."""
        if clash := STORE_KEYS & updates.keys():
            raise ValueError(f"meta may not set the store's own keys: {', '.join(sorted(clash))}")
        with self.lock(kind, name):
            artifact = self.load(kind, name, version)
            meta = {**artifact.meta, **updates}
            replace_atomically(artifact.path / META_FILE, _meta_bytes(meta))
        return replace(artifact, meta=meta)

    @staticmethod
    def _read_verified(path: Path, entry: Mapping[str, Any]) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CorruptArtifactError(f"{path}: cannot be read ({error.strerror})") from error
        recorded = (entry.get("bytes"), entry.get("sha256")) if isinstance(entry, dict) else None
        if recorded != (len(data), _sha256(data)):
            raise CorruptArtifactError(
                f"{path}: {len(data)} bytes with sha256 {_sha256(data)}, but meta.json "
                f"records (bytes, sha256) = {recorded}"
            )
        return data

    @staticmethod
    def _next_version(model_dir: Path) -> str:
        numbers = [
            int(m.group(1)) for e in model_dir.iterdir() if (m := _VERSION.fullmatch(e.name))
        ]
        return f"v{max(numbers, default=0) + 1:04d}"

    @staticmethod
    def _remove_leftovers(model_dir: Path) -> None:
        """Delete what writers that died left behind; only call while holding the lock."""
        for entry in model_dir.glob(f"{TEMP_PREFIX}*"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
