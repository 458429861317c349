"""Durable, all-or-nothing file writes on POSIX file systems.

A reader must see either the old file or the new one, and a crash (power loss included)
must not leave a rename that points at data still in the page cache. Hence: write a
temporary file in the same folder, fsync it, rename it over the target, fsync the folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"
# mkstemp and mkdtemp create private (0600/0700) entries; artifacts are read by servers
# that may run as another user, so published ones are made world-readable.
FILE_MODE = 0o644
DIR_MODE = 0o755


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Create `path` with `data` and fsync it; for files inside a folder not yet visible."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix.

    The temporary file is named TEMP_PREFIX..., so a writer killed before the rename leaves
    a dot-file that the artifact store's next write removes.
    """
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
