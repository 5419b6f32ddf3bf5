"""Mixed precision: autocast context and gradient scaler for `amp` in none | bf16 | fp16."""

from __future__ import annotations

import contextlib

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> None:
    """What `solver.amp` needs of the device (the value itself is checked by the config loader)."""
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"solver.amp=fp16 needs a CUDA device (got {device}); use bf16 or none")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 on `device`, or a no-op for `amp="none"`."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, active only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
