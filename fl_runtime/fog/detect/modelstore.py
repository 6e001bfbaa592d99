"""The last global model, kept on disk so the scorer scores after a restart while the
cloud is unreachable. Written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from fl_runtime.core.messages import GlobalModel, decode_global, encode_global
from fl_runtime.errors import ValidationError

MODEL_FILE = "global-model.json"


def save_model(state_dir: Path, model: GlobalModel) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / MODEL_FILE
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".global-model.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encode_global(model))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(state_dir)
    return path


def load_model(state_dir: Path) -> GlobalModel | None:
    """The saved model, or None if there is none (a damaged file counts as none)."""
    try:
        return decode_global((state_dir / MODEL_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
