"""The one resolver for shared test data (models, videos, MOT files, images).

The data folder is ``$STREAMER_DATA`` when set, else ``../shared/data`` beside the
repository checkout (falling back to ``../shared/data`` relative to the working
directory). Nothing from it is ever copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "STREAMER_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Return the shared data folder (it may not exist on a machine without it)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    beside_repo = _REPO_ROOT.parent / "shared" / "data"
    if beside_repo.is_dir():
        return beside_repo
    return (Path.cwd().parent / "shared" / "data").resolve()


def data_path(relative: str | os.PathLike[str]) -> Path:
    """Resolve ``relative`` (e.g. ``"videos/pets09_s2l1_480x360.mp4"``) inside the data root.

    The path is returned whether or not it exists; callers that open it report
    a missing file with its full path.
    """
    return data_root() / Path(relative)
