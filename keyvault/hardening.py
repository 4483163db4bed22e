"""Process hardening for anything that holds a key in memory.

A core file is a copy of the process memory on disk: the key, the decrypted store, the
environment. The CLI sets the soft RLIMIT_CORE to 0 before it reads any key, so a crash leaves
no core file (the kernel writes none, and systemd-coredump honours the limit too). The hard
limit is left alone: a child started by `keyvault exec` inherits 0 and may raise it again.
"""

from __future__ import annotations


def disable_core_dumps() -> bool:
    """Set the soft core-file size limit to 0; False where the platform has no rlimits."""
    try:
        import resource
    except ImportError:  # Windows
        return False
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ValueError, OSError):
        return False
    return True
