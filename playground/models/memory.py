"""How much memory this process may use: the machine's, or its container's where that is lower, and a GPU's.

Inside a container (a Hugging Face Space, Docker, Kubernetes) ``/proc/meminfo`` and ``sysconf``
describe the host, not what the container may take: past its cgroup's limit the kernel kills the
process. So the limit comes from the cgroup where one is set (v2 ``memory.max``, v1
``memory.limit_in_bytes``), and what is available is the smaller of the host's available memory
and the limit less the cgroup's working set (its usage less the inactive file cache, which the
kernel reclaims first: the figure ``docker stats`` and the kubelet use). A CUDA device's free and
total memory come from ``torch.cuda.mem_get_info``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import weakref
from pathlib import Path

import torch

CGROUP_V2 = Path("/sys/fs/cgroup")         # memory.max, memory.current, memory.stat
CGROUP_V1 = Path("/sys/fs/cgroup/memory")  # memory.limit_in_bytes, memory.usage_in_bytes, memory.stat
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1; anything this large is no limit
UNLIMITED = 2 ** 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # v2 writes "max" for no limit


def _stat(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == field and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def cgroup() -> tuple[int, int] | None:
    """(limit, working set) in bytes of this process's memory cgroup, or None where no limit is set."""
    for root, limit_file, usage_file, inactive in (
            (CGROUP_V2, "memory.max", "memory.current", "inactive_file"),
            (CGROUP_V1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")):
        limit = _read_int(root / limit_file)
        if limit is None or limit >= UNLIMITED:
            continue
        usage = _read_int(root / usage_file) or 0
        return limit, max(0, usage - _stat(root / "memory.stat", inactive))
    return None


def host_total() -> int:
    """Bytes of memory this process may use in all: the machine's physical memory, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = cgroup()
    return total if limits is None else min(total, limits[0])


def host_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Bytes this process can take now: MemAvailable (else free physical pages), or what its cgroup's limit
    leaves above its working set if that is lower."""
    available = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024  # the file counts kB
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limits = cgroup()
    return available if limits is None else min(available, max(0, limits[0] - limits[1]))


def _libc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc() if os.name == "posix" else None


def release_freed() -> bool:
    """Give the pages the C allocator holds free back to the system (glibc's ``malloc_trim``); True if it could.

    A long analysis frees many tile-sized buffers; glibc keeps the pages of freed blocks that sit below its
    heaps' tops, one heap (arena) per thread that allocated, so without this a server's resident memory
    ratchets up to each worker thread's largest request although the tensors it keeps are a fraction of it.
    Every request ends with it (``ui.api.run``), and so does an analysis where it ran (a GPU worker's process).
    Elsewhere (musl, macOS, Windows) a no-op that returns False.
    """
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False


def on_cuda(device: str | torch.device | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def device_memory(device: str | torch.device) -> tuple[int, int]:
    """(free, total) bytes of a CUDA device: ``torch.cuda.mem_get_info`` plus the blocks PyTorch's caching
    allocator holds unused (free to PyTorch, though not to the driver)."""
    device = torch.device(device)
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free + max(0, cached), total


class LiveBytes:
    """Bytes of objects while anything still holds them: ``add(obj, nbytes)`` counts ``nbytes`` until ``obj`` is
    collected (a weak reference's callback drops it), ``total()`` sums what is alive. For memory a server handed
    out and no longer holds itself: weights evicted from a cache while a request still runs on them, timelines
    kept in visitors' sessions."""

    def __init__(self):
        self._alive: dict[int, tuple[weakref.ref, int]] = {}

    def add(self, obj, nbytes: int) -> None:
        key = id(obj)
        self._alive[key] = (weakref.ref(obj, lambda _: self._alive.pop(key, None)), int(nbytes))

    def total(self) -> int:
        return sum(n for ref, n in list(self._alive.values()) if ref() is not None)

    def __len__(self) -> int:
        return sum(1 for ref, _ in list(self._alive.values()) if ref() is not None)
