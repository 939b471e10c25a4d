"""WebSocket extensions. permessage-deflate (RFC 7692) is the one in use on the web."""

from .permessage_deflate import Deflate, PerMessageDeflate

__all__ = ["Deflate", "PerMessageDeflate"]
