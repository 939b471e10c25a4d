"""TLS for tests: a throwaway certificate authority (trustme, a test dependency)."""

from __future__ import annotations

import ssl

import trustme


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and localhost, and a
    client context that trusts it (and nothing else)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client
