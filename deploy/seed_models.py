#!/usr/bin/env python3
"""Give a shared models folder the default models, without disturbing what is already there.

    pricing-seed-models SOURCE TARGET

Docker fills an empty named volume from the image on first use, so compose needs no seeding;
Kubernetes does not, so its `models-seed` Job runs this (installed in the server image as
/usr/local/bin/pricing-seed-models) from the image's models to the volume. `make rehearse`
seeds its temporary models folder with it too.

For each model promoted in SOURCE (`<kind>/<name>/CURRENT`) that TARGET has not promoted:
- its promoted version is copied into a staging folder beside the versions and renamed into
  place, so a version appears whole or not at all;
- then TARGET's CURRENT is created pointing at it, atomically and never over an existing one
  (a hard link fails if the name exists), once the copy reads back verified.
A server polling TARGET never sees a pointer to a half-copied version (it would refuse that
version for good), a model the trainer already promoted keeps its version, and running it
again, or twice at once, changes nothing more.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from shared.artifact_store import CURRENT_FILE, KINDS, META_FILE, ArtifactStore
from shared.atomic_files import DIR_MODE, FILE_MODE, fsync_dir, write_durably

# Not the store's own ".tmp-": a store writer, holding a lock this does not take, would
# delete a staging folder of that name as a dead writer's leftover.
STAGING_PREFIX = ".seed-"


def seed(source: Path, target: Path) -> list[str]:
    """Seed TARGET from SOURCE; the lines say what was done for each model of SOURCE."""
    found, wanted = ArtifactStore(source), ArtifactStore(target)
    done = []
    for kind in KINDS:
        for name in found.promoted(kind):
            version = found.current_version(kind, name)
            model = f"{kind}/{name}"
            if (wanted.model_dir(kind, name) / CURRENT_FILE).exists():
                done.append(f"{model}: kept, already promoted there")
                continue
            origin = found.model_dir(kind, name) / version
            copy = wanted.model_dir(kind, name) / version
            _copy_whole(origin, copy)
            if (copy / META_FILE).read_bytes() != (origin / META_FILE).read_bytes():
                done.append(f"{model}: kept, its {version} is another model")
                continue
            wanted.load(kind, name, version)  # raises if the copy does not verify
            if _create_once(copy.parent / CURRENT_FILE, f"{version}\n".encode()):
                done.append(f"{model}: seeded {version}")
            else:
                done.append(f"{model}: kept, promoted there meanwhile")
    return done


def _copy_whole(origin: Path, copy: Path) -> None:
    """Copy folder `origin` to `copy` all at once; nothing happens if `copy` exists."""
    if copy.exists():
        return
    copy.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=copy.parent))
    try:
        for file in origin.iterdir():
            write_durably(staging / file.name, file.read_bytes())
            (staging / file.name).chmod(FILE_MODE)
        staging.chmod(DIR_MODE)
        fsync_dir(staging)
        os.rename(staging, copy)
    except OSError:
        # Another seeder renamed its copy into place first (a non-empty folder is never
        # replaced); any other failure is real.
        shutil.rmtree(staging, ignore_errors=True)
        if not copy.exists():
            raise
        return
    fsync_dir(copy.parent)


def _create_once(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` atomically; False, changing nothing, if it exists."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=path.parent))
    try:
        write_durably(staging / path.name, data)
        (staging / path.name).chmod(FILE_MODE)
        os.link(staging / path.name, path)
    except FileExistsError:
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(path.parent)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    for line in seed(Path(argv[0]), Path(argv[1])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
