"""Handing the memory a request freed back to the system.

A request allocates hundreds of MB of short-lived tensors and strings (a forward's activations, the tiles
of a sweep, a figure's JSON) and frees them when it ends. glibc's malloc keeps freed chunks in the arena of
the thread that allocated them, for that thread to reuse, and gives back only what lies at the top of an
arena. Between the chunks a request frees lie the ones it keeps (a stored analysis, a session's figures),
so each worker thread's arena stays at the high-water mark of the largest request it ever ran: measured
with 8 browser sessions of 1,024-token GPT-2 analyses, 1.2 GB of the process's 2.7 GB was free memory
held this way (``mallinfo2``'s ``fordblks``).

``trim`` asks glibc to give back every whole free page in every arena (``malloc_trim(0)``, which also
releases the free pages between chunks in use). It is called once when each request ends
(``ui.api.run``). A fixed mmap threshold would keep large blocks out of the arenas altogether, but it
pays the page faults of a fresh mapping on each large tensor: the analysis above took 25% longer.
Where the C library is not glibc (macOS, musl) ``trim`` does nothing and says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def available() -> bool:
    """Whether this C library can hand free memory back (glibc)."""
    return _malloc_trim() is not None


def trim() -> bool:
    """Give every whole free page of the C heap back to the system; True if any was given back (False also
    where the C library cannot, see ``available``)."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False
