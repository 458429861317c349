"""The server side never pulls in TensorFlow: not through its extra, not through an import."""

import subprocess
import sys

from image_size import dependency_closure

TRAINER_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "tf-keras"}


def test_server_extra_installs_no_tensorflow():
    server = dependency_closure("option-pricing", {"server"})
    assert {"onnxruntime", "grpcio", "redis", "cachetools", "numpy", "protobuf"} <= server
    assert not server & TRAINER_ONLY
    # The check has teeth: the trainer extra does reach TensorFlow.
    assert "tensorflow-cpu" in dependency_closure("option-pricing", {"trainer"})


def test_server_and_shared_import_without_tensorflow():
    code = (
        "import sys, pkgutil, importlib, server, shared\n"
        "for package in (server, shared):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx', 'trainer'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
