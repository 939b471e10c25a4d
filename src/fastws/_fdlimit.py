"""The open-file limit: a process with many connections needs one descriptor
per connection, and the usual soft limit (1024) is far below the hard one."""

from __future__ import annotations

try:
    import resource
except ImportError:  # Windows: no RLIMIT_NOFILE
    resource = None  # type: ignore[assignment]

__all__ = ["raise_fd_limit"]


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``wanted``, as far as the hard
    limit allows (child processes inherit it); return the (soft, hard) limits
    now. Without the ``resource`` module, ``(wanted, wanted)``."""
    if resource is None:
        return wanted, wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)
