"""Reading training checkpoints without trusting them.

A checkpoint is a pickle: loaded with ``torch.load(weights_only=False)`` it
runs whatever code a crafted file carries, and users export weights someone
sent them. Checkpoints are therefore read with ``weights_only=True``, which
accepts tensors and plain data (dicts, lists, numbers, strings) only; the
configuration and run state are stored as plain data (``train.py``).

Checkpoints written before the NumPy random state was stored as plain data
(the shipped ``runs/r2`` and ``runs/r4`` ones) hold one NumPy array; the
functions that rebuild a NumPy array, and nothing else, are allowed for them.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """The file is not a checkpoint this code reads safely."""


def numpy_array_rebuilders() -> list:
    """What unpickling a plain NumPy array calls: its constructor, the array
    and dtype classes (and, from NumPy 1.25 on, the dtype's own class)."""
    core = getattr(np, "_core", None) or np.core
    # The Mersenne Twister state is uint32; its dtype is rebuilt through its class.
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors on the CPU), or a CheckpointError
    saying why it is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals(numpy_array_rebuilders()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"The checkpoint {path} holds Python objects other than tensors and plain data "
            f"({_first_unsupported(exc)}); it is not loaded, because loading it would run code "
            "the file carries. Use checkpoints written by model_export.train, or save the "
            "weights as a plain state dict."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"The checkpoint {path} cannot be read (corrupt, truncated or not a PyTorch "
            f"file): {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        ) from exc
    if not isinstance(ckpt, dict) or not {"config", "model"} <= ckpt.keys():
        raise CheckpointError(
            f"The checkpoint {path} is not one written by model_export.train (it lacks the "
            "'config' and 'model' entries)."
        )
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(
            f"The checkpoint {path} stores its model configuration as "
            f"{type(ckpt['config']).__name__}, not as plain data (a dict)."
        )
    return ckpt


def _first_unsupported(exc: Exception) -> str:
    """The global torch refused ("GLOBAL os.system"), for the message."""
    text = str(exc)
    match = (
        re.search(r"Unsupported global: GLOBAL (\S+)", text)
        or re.search(r"unsupported GLOBAL (\S+)", text)
        or re.search(r"but got <class '([^']+)'>", text)
    )
    if match:
        return f"it refers to {match.group(1).rstrip('.')}"
    return "objects torch does not load as weights"
