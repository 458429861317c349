"""What every bench script needs: a careful timer and the name of the machine it ran on."""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable
from pathlib import Path


def best_seconds(run: Callable[[], object], min_total: float = 0.5) -> float:
    """Seconds per call: the best of 5 repeats of enough calls to last min_total seconds."""
    timer = timeit.Timer(run)
    loops, elapsed = timer.autorange()
    loops = max(1, int(loops * min_total / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=5, number=loops)) / loops


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores"
