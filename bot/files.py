"""Files that hold client text are readable by their owner only (DEVELOPERS.md, issue 12).

The database, its -wal and -shm files (SQLite gives them the database's mode), backups and
the servers' logs are created 0600, in directories this code creates 0700. A directory that
already exists is left as it is (``TRIAGE_DB=/srv/clinic/triage.db`` must not change /srv);
a file that already exists and belongs to us is tightened to 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and any missing parents as 0700 directories; return it."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` (and its directory) owner-only, or tighten it if it is ours; return it."""
    path = Path(path)
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    if path.stat().st_uid == os.getuid():
        os.chmod(path, FILE_MODE)
    return path
