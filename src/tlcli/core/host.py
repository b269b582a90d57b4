"""Process settings that make CPU training several times faster, applied before the first step;
and the start of several training processes (``--nproc``), which needs no torch.

On Linux with glibc, large tensors (above glibc's mmap threshold, 32 MB at most) are mmap'd
and unmapped on every step, so each step re-faults its activations page by page: EfficientNet-B0
at batch 32 took ~600,000 minor page faults per step here and spent a third of its time in the
kernel. Keeping big blocks in the heap and never trimming it (``mallopt``) removes the faults:
full fine-tuning went from ~8 to ~15 img/s on 2 cores (measured by ``tlcli bench``). A
preloaded jemalloc or tcmalloc solves the same problem, so with one of those in ``LD_PRELOAD``
nothing is changed. ``TLCLI_ALLOCATOR=default`` turns the tuning off.

The price is that a training process keeps its peak memory until it exits, which is what a
training run does anyway; ``tlcli serve`` and ``predict`` are not tuned.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from tlcli.core.errors import ConfigError

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TOP_PAD_BYTES = 256 << 20
_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def allocator_tuning() -> str:
    """Tune glibc's malloc for training; returns what was done, for the run's log."""
    if os.environ.get("TLCLI_ALLOCATOR", "").lower() == "default":
        return "default (TLCLI_ALLOCATOR=default)"
    preloaded = [name for name in _PRELOADED_ALLOCATORS if name in os.environ.get("LD_PRELOAD", "")]
    if preloaded:
        return f"{preloaded[0]} (LD_PRELOAD)"
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "default (not glibc)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = (
        mallopt(_M_MMAP_MAX, 0)  # big blocks come from the heap, where freed memory is reused
        and mallopt(_M_TRIM_THRESHOLD, -1)  # -1 is SIZE_MAX to glibc: never give the heap back mid-run
        and mallopt(_M_TOP_PAD, _TOP_PAD_BYTES)
    )
    return "glibc tuned (no mmap, no trim)" if applied else "default (mallopt refused)"


def available_cores() -> int:
    """Cores this process may really use: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cap_threads() -> int:
    """No more intra-op threads than available cores: torch counts the machine's cores, which
    oversubscribes a container limited to fewer. A lower setting (OMP_NUM_THREADS) is kept."""
    import torch

    threads = min(torch.get_num_threads(), available_cores())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch(nproc: int, arguments: list[str]) -> int:
    """``tlcli ARGUMENTS`` in ``nproc`` processes on this machine, started by PyTorch's own
    launcher (what ``torchrun --standalone`` runs: a free port, no other setting); returns its
    exit code. The processes share this terminal and print their own progress and errors.
    This process only waits, so it does not import torch."""
    if launched():
        raise ConfigError("--nproc starts torchrun, and this process already runs under it: leave --nproc out")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "tlcli", *arguments]
    # torchrun in a session of its own, ignoring SIGUSR1 (its default would end it): the signals
    # this process gets reach it from here alone. Its workers have sessions of their own: SIGUSR1
    # goes to each of them, whose handlers stop them together after the epoch's checkpoint.
    process = subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGUSR1, signal.SIG_IGN))
    relay = signal.signal(signal.SIGUSR1, lambda *_: _signal_children(process.pid, signal.SIGUSR1))
    try:
        return process.wait()
    except KeyboardInterrupt as interrupt:  # SIGINT, SIGTERM or SIGHUP: torchrun stops its processes on it
        process.send_signal(getattr(interrupt, "signum", signal.SIGINT))
        process.wait()
        raise
    finally:
        signal.signal(signal.SIGUSR1, relay)


def _signal_children(pid: int, signum: int) -> None:
    """``signum`` to each child of ``pid`` (Linux lists them per thread under /proc)."""
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            for child in children.read_text().split():
                os.kill(int(child), signum)
