"""Helpers for the reconnection tests of both clients (asyncio and sync)."""

from __future__ import annotations

from fastws import Headers, Response
from fastws.policy import Backoff


def fast() -> Backoff:
    """Backoff for tests: short, but never zero."""
    return Backoff(initial=0.01, maximum=0.05, stable_after=60.0)


class Gate:
    """process_request that answers ``status`` to the first ``refusals`` requests."""

    def __init__(self, refusals: int, status: int = 503) -> None:
        self.refusals, self.status, self.requests = refusals, status, 0

    def __call__(self, ws, request):
        self.requests += 1
        if self.requests <= self.refusals:
            return Response(self.status, Headers([("Retry-After", "0")]))
        return None
