"""Where and how precisely to compute, and how to make it repeatable."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from tlcli.core.config import AMP_CHOICES
from tlcli.core.host import available_cores
from tlcli.core.errors import TlcliError



@dataclass(frozen=True)
class Precision:
    device_type: str  # "cuda", "cpu", "mps": what torch.autocast takes
    dtype: torch.dtype | None  # None: full fp32
    use_scaler: bool  # fp16 needs loss scaling; bf16 does not

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.enabled)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type if self.device_type != "mps" else "cpu", enabled=self.use_scaler)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise TlcliError(f"unknown device '{requested}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TlcliError(f"device {requested}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TlcliError(f"device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TlcliError("device mps: Apple's Metal backend is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise TlcliError(f"unsupported device '{requested}'; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """auto: bf16 on CUDA where supported else fp16 with a GradScaler; off on the CPU and MPS."""
    if amp not in AMP_CHOICES:
        raise TlcliError(f"unknown amp '{amp}'; choose one of {', '.join(AMP_CHOICES)}")
    if amp == "auto":
        if device.type != "cuda":
            amp = "off"
        else:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "off":
        return Precision(device.type, None, False)
    if amp == "fp16" and device.type == "cpu":
        raise TlcliError("fp16 mixed precision is for GPUs; on the CPU use bf16 or off")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return Precision(device.type, dtype, dtype == torch.float16)


def default_workers() -> int:
    """Loader processes: none on small machines, where they compete with the model for cores."""
    cores = available_cores()
    return 0 if cores <= 2 else min(8, cores - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(deterministic: bool) -> None:
    """Deterministic kernels when asked; otherwise let cuDNN pick the fastest ones."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only on a change: the call imports torch._inductor, 2 s of start-up for the default.
    if torch.are_deterministic_algorithms_enabled() != deterministic or torch.is_deterministic_algorithms_warn_only_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def rng_state() -> dict:
    """Every random generator's state, as tensors and plain values (checkpoint-safe)."""
    numpy_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
