"""Models in service and their hot reload: one holder per model, swapped when `CURRENT` changes.

A `ModelHolder` opens the version `CURRENT` names off the request path, in a thread: the
store verifies its sha256, then a loader (`load_pinn`, `load_forecaster`) opens the session
and checks the interface and a warm-up run. Only then is it swapped in. A caller that took
`holder.current` keeps that object for its whole call, so in-flight calls finish on the
session they started with. A version that fails is refused (once, and logged) and the old
one keeps serving. A `ModelFamily` holds a holder per promoted name of one kind, one
forecaster per symbol, and takes in the names promoted while the server runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import onnxruntime as ort

from shared.artifact_store import Artifact, ArtifactError, ArtifactStore
from shared.onnx_runtime import onnx_session

log = logging.getLogger(__name__)


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


M = TypeVar("M", bound=Versioned)


class ModelCheckError(RuntimeError):
    """A stored version opened but failed the server's own checks."""


class NoModel(RuntimeError):
    """No servable version has been loaded yet."""


def open_session(artifact: Artifact) -> ort.InferenceSession:
    """The artifact's onnxruntime session; ModelCheckError if onnxruntime cannot open it."""
    try:
        return onnx_session(artifact.model)
    except Exception as error:  # onnxruntime raises its own assorted types for a bad graph
        raise ModelCheckError(
            f"{artifact.path}: onnxruntime cannot open model.onnx: {error}"
        ) from error


class ModelHolder(Generic[M]):
    """One model's version in service (None until one loads) and its reload.

    `load` turns a verified artifact into a servable model or raises ModelCheckError.
    """

    def __init__(
        self,
        store: ArtifactStore,
        kind: str,
        name: str,
        load: Callable[[Artifact], M],
        on_swap: Callable[[M], None] = lambda _: None,
    ) -> None:
        self.store, self.kind, self.name = store, kind, name
        self._load = load
        self._on_swap = on_swap
        self._current: M | None = None
        self.refused: set[str] = set()

    @property
    def current(self) -> M:
        if self._current is None:
            raise NoModel(f"no servable {self.kind}/{self.name} model in {self.store.root} yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def _open(self, version: str) -> M:
        return self._load(self.store.load(self.kind, self.name, version))

    async def reload_if_promoted(self) -> None:
        serving = self._current.version if self._current else None
        try:
            version = await asyncio.to_thread(self.store.current_version, self.kind, self.name)
        except ArtifactError as error:
            log.warning("cannot read the promoted version: %s", error)
            return
        if version == serving or version in self.refused:
            return
        model_id = f"{self.kind}/{self.name}"
        try:
            model = await asyncio.to_thread(self._open, version)
        except (ArtifactError, ModelCheckError) as error:
            self.refused.add(version)
            log.error("refused %s/%s, still serving %s: %s", model_id, version, serving, error)
            return
        self._current = model
        self._on_swap(model)
        log.info("serving %s/%s (before: %s)", model_id, model.version, serving or "none")


class ModelFamily(Generic[M]):
    """A holder per promoted name of one kind; names promoted later join at the next reload."""

    def __init__(
        self,
        store: ArtifactStore,
        kind: str,
        load: Callable[[Artifact], M],
        on_swap: Callable[[str, M], None] = lambda _name, _model: None,
    ) -> None:
        self.store, self.kind = store, kind
        self._load = load
        self._on_swap = on_swap
        self._holders: dict[str, ModelHolder[M]] = {}

    def get(self, name: str) -> M | None:
        """The model in service under this name, if any."""
        holder = self._holders.get(name)
        return holder.current if holder is not None and holder.loaded else None

    def serving(self) -> dict[str, M]:
        """Every name with a model in service, and that model."""
        return {name: h.current for name, h in sorted(self._holders.items()) if h.loaded}

    async def reload_if_promoted(self) -> None:
        try:
            names = await asyncio.to_thread(self.store.promoted, self.kind)
        except OSError as error:  # the models in service stay; the next reload tries again
            log.warning("cannot list the %s models in %s: %s", self.kind, self.store.root, error)
            names = []
        for name in names:
            if name not in self._holders:
                on_swap = functools.partial(self._on_swap, name)
                self._holders[name] = ModelHolder(self.store, self.kind, name, self._load, on_swap)
        for holder in list(self._holders.values()):
            await holder.reload_if_promoted()


async def watch(interval: float, *models: ModelHolder[Any] | ModelFamily[Any]) -> None:
    """Reload each holder or family every `interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        for held in models:
            await held.reload_if_promoted()
