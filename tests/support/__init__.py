"""Helpers shared by the test modules, split by job (test modules never import each other).

- ``asyncio``: ``async_test`` (a fresh event loop and a deadline), ``RawPeer`` (a hand-driven TCP client),
  ``upgrade_request``
- ``frames``: ``client_frame`` (masked frames built by hand, not by the codec under test), ``naive_mask``
- ``processes``: ``ServerProcess`` (fastws echo servers in a subprocess, with counters)
- ``codecs``: ``BACKENDS``, ``MODULES``, ``all_codecs()`` (the codec backends under test)
"""
