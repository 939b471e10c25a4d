"""``fastws bench``: a WebSocket load generator, the "wrk" of WebSockets.

It opens ``connections`` client connections to any RFC 6455 echo server, sends
messages, checks that each one comes back, and reports throughput and a latency
distribution::

    fastws bench ws://127.0.0.1:3000/ -c 10 -d 10 -s 256,8192 --mode pipelined --window 32

Three ways to apply load:

- ``roundtrip`` (closed loop): each connection sends one message and waits for
  its echo before sending the next. Latency is the round-trip time.
- ``pipelined`` (closed loop): each connection keeps ``window`` messages in flight.
- ``rate`` (open loop): ``rate`` messages per second in all, scheduled at fixed
  times ``t0 + k / rate`` and spread round-robin over the connections. Latency is
  measured from the *scheduled* send time, not from when the message was
  actually written, so a stalled server (or a stalled client) shows up in the
  latency instead of silently lowering the load: no coordinated omission.

Latencies go into a log-linear histogram (HdrHistogram-like: 1 µs resolution,
relative error below 1/128, up to about 71 minutes), so recording costs a few
integer operations and percentiles are exact to the bucket.

Python API::

    from fastws.loadgen import bench

    result = await bench("ws://127.0.0.1:3000/", connections=10, duration=5)
    print(result.msgs_per_s, result.p99_us)
    print(result.to_json())

The client uses the callback-level API (``Listener`` with ``send_nowait`` for
round trips, ``send_soon`` for pipelined and rate modes, which the asyncio
layer batches into one write per connection per loop iteration): no task,
future or queue per message, so the client costs as little as it can.

Not part of the core API: ``import fastws`` does not import this package.
Modules: ``histogram`` (Histogram), ``client`` (the per-connection Listener
and the Bench runner), ``report`` (BenchResult, summary, plot), ``cli``
(``fastws bench`` options and entry point).
"""

from .cli import add_arguments, run
from .client import MODES, Bench, bench
from .histogram import Histogram
from .report import BenchResult, plot

__all__ = ["Histogram", "BenchResult", "Bench", "bench", "add_arguments", "run", "plot", "MODES"]
