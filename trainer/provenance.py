"""What a model was built with, recorded in every meta.json."""

from __future__ import annotations

import platform
from importlib import metadata


def library_versions() -> dict[str, str]:
    names = ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
