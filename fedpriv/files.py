"""Writing a file so that a crash never leaves it half-written (temp file in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` (str is written as UTF-8) in one step: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tensors_atomically(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """A state dict as safetensors, written atomically (adapters the device keeps next to its ledger)."""
    from safetensors.torch import save

    write_atomically(path, save({k: v.detach().contiguous() for k, v in tensors.items()}))
