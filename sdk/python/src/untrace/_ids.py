"""Trace ids and clocks.

``new_id`` makes a UUIDv7-shaped id from the standard library: 48 bits of Unix
milliseconds, then random bits, so ids sort by creation time. ``random`` (not
``os.urandom``) keeps it cheap on the caller's thread; CPython reseeds ``random`` in a
child after ``os.fork``, so forked workers do not repeat their parent's ids.
"""

from __future__ import annotations

import random
import time

__all__ = ["new_id", "now_ms"]

_VERSION_7 = 0x7 << 76
_VARIANT = 0x2 << 62
_RAND_A_SHIFT = 64


def new_id() -> str:
    ms = time.time_ns() // 1_000_000
    bits = random.getrandbits(74)
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | (bits >> 62) << _RAND_A_SHIFT
        | _VARIANT
        | (bits & 0x3FFF_FFFF_FFFF_FFFF)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000
