"""What each image's pip install adds to the python base image, in MB, from the installed files.

    .venv/bin/python deploy/image_size.py

server.Dockerfile runs `pip install '.[server]'` into a venv, trainer.Dockerfile
`pip install '.[trainer]'`. This adds up, over the dependency closure of each extra as
installed in this environment (same resolver, so the same distributions; versions may
differ by a patch), the size of every file that each distribution's RECORD lists, plus the
venv's own pip, this package's modules that the image copies and the committed models. The
base image (python:3.11-slim-bookworm) comes on top and is the same for both.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "option-pricing"
# What each image copies from this repository besides the installed distributions.
COPIED = {"server": ["shared", "server", "models"], "trainer": ["shared", "trainer", "models"]}
MB = 1e6


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(distribution: str, extras: set[str]) -> set[str]:
    """Names of every installed distribution that `distribution[extras]` requires, transitively."""
    seen: set[str] = set()
    pending = [(distribution, extras)]
    while pending:
        name, wanted = pending.pop()
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": extra}) for extra in wanted or {""}):
                continue
            dependency = canonical(requirement.name)
            if dependency not in seen:
                seen.add(dependency)
                pending.append((dependency, set(requirement.extras)))
    return seen


def installed_bytes(name: str) -> int:
    """The size of the files a distribution installed (its RECORD), bytecode included."""
    distribution = metadata.distribution(name)
    paths = (Path(distribution.locate_file(file)) for file in distribution.files or [])
    return sum(path.stat().st_size for path in paths if path.is_file())


def copied_bytes(folders: list[str]) -> int:
    files = (path for folder in folders for path in (REPO / folder).rglob("*"))
    return sum(path.stat().st_size for path in files if path.is_file() and _copied(path))


def _copied(path: Path) -> bool:
    """What .dockerignore lets through: no bytecode caches, no artifact-store bookkeeping."""
    return "__pycache__" not in path.parts and not path.name.startswith(".")


def sizes(extra: str) -> dict[str, int]:
    """Bytes by distribution (and this repository's copied files) for one image."""
    names = dependency_closure(PACKAGE, {extra}) | {"pip"}
    found = {name: installed_bytes(name) for name in sorted(names)}
    found[f"{'/, '.join(COPIED[extra])}/ (copied)"] = copied_bytes(COPIED[extra])
    return found


def main() -> int:
    for extra in ("server", "trainer"):
        found = sizes(extra)
        total = sum(found.values())
        print(f"{extra} image: {total / MB:,.1f} MB over the base image, {len(found)} parts")
        for name, size in sorted(found.items(), key=lambda item: -item[1])[:8]:
            print(f"  {size / MB:9,.1f} MB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
