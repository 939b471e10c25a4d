"""The file a server binds for a Unix socket, shared by the asyncio and threaded servers."""

from __future__ import annotations

import os
from typing import Optional


class SocketFile:
    """A Unix socket's file as bound: ``remove()`` unlinks it only while it is
    still that file (another server may have replaced it since)."""

    __slots__ = ("path", "identity")

    def __init__(self, path: str) -> None:
        found = os.stat(path)
        self.path = path
        self.identity = (found.st_dev, found.st_ino)

    @classmethod
    def bound(cls, path: str) -> Optional[SocketFile]:
        """The file at ``path``; None for a Linux abstract socket, which has none."""
        return None if path.startswith("\0") else cls(path)

    def remove(self) -> None:
        try:
            found = os.stat(self.path)
            if (found.st_dev, found.st_ino) == self.identity:
                os.unlink(self.path)
        except OSError:  # already gone (Python 3.13+ asyncio removes it too), or not ours to remove
            pass
