"""Crash injection: the test hook that proves every crash point converges.

`KEYVAULT_CRASH_AT=<point>` makes the process die with `os._exit(137)` (what kill -9 leaves
behind: no cleanup, no finally, no flush of anything the engine did not already write) the
moment the engine reaches that point. Points are `<step>` (the journal has recorded entering
the step, its work has not begun) or `<step>:<substep>` (inside the step, e.g.
`update:promote:2`, between staging and promoting the second target).

`KEYVAULT_CRASH_TRACE=<file>` appends every point reached, one per line, so a test can list
the points a full rotation passes through and then crash at each one: the crash matrix covers
the code as it is, not a list someone remembered to update.
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT = 137


def point(name: str) -> None:
    trace = os.environ.get("KEYVAULT_CRASH_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    if os.environ.get("KEYVAULT_CRASH_AT") == name:
        # Flush what was printed so the test sees how far the run got; nothing else runs.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(CRASH_EXIT)
