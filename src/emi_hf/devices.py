"""Where models run: the first GPU when there is one, else the CPU (one rule for extraction, inference, evaluation)."""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> str:
    """`device` when given, else ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"
