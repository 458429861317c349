"""The committed default PINN meets the accuracy goals, run by onnxruntime alone."""

import json
import subprocess
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"

# In a fresh interpreter, so that the check also proves no TensorFlow is needed to run it.
CHECK = f"""
import json, sys
from shared.artifact_store import ArtifactStore
from trainer.pinn.evaluate import accuracy
artifact = ArtifactStore({str(MODELS)!r}).load("pinn", "default")
metrics = accuracy(artifact.model, points=100_000, seed=20261126)
print(json.dumps({{
    "version": artifact.version,
    "metrics": {{m.name: [m.value, m.passed] for m in metrics}},
    "heavy_imports": sorted(m for m in sys.modules if m.split(".")[0] in {{"tensorflow", "keras", "tf2onnx"}}),
}}))
"""


def test_committed_default_model_meets_every_goal_on_fresh_points():
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy_imports"] == []
    missed = {name: value for name, (value, passed) in report["metrics"].items() if passed is False}
    assert missed == {}, f"{report['version']} misses: {missed}"
    assert report["metrics"]["price max abs error / K"][0] <= 5e-5
    assert report["metrics"]["price bound violations"][0] == 0
