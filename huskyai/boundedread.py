"""Reading a file whole, but never more than a limit: the one rule for every file Husky AI reads by a path it
was given (a photo, a key).

A file may grow after its size was checked, and a path may name something endless (a device, a pipe); so one
byte more than the limit is read, and a file that has it is over the limit, whatever its size said. Each caller
keeps its own way of opening the file (a photo never through a link) and its own errors: it passes what to raise
when the read fails and when the file is over the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO


def read_at_most(f: BinaryIO, limit: int, unreadable: Callable[[OSError], Exception],
                 too_large: Callable[[], Exception]) -> bytes:
    """All of the open file ``f``, at most ``limit`` bytes: ``unreadable(err)`` is raised when reading fails,
    ``too_large()`` when the file holds more than ``limit`` bytes."""
    try:
        data = f.read(limit + 1)
    except OSError as err:
        raise unreadable(err) from None
    if len(data) > limit:
        raise too_large()
    return data
