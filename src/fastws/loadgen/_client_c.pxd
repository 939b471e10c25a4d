# Compiled from _client_py.py (see setup.py): _Client and Bench as extension
# types, their counters and flags C struct members. The source stays plain
# Python; nothing here changes what it does. Keep the fields in step with
# _Client.__init__ and Bench.__init__.

cimport cython

cdef class _Client:
    cdef public Bench bench
    cdef public object ws
    cdef public object times
    cdef public object backlog
    cdef public long long tx
    cdef public long long rx
    cdef public long long skip
    cdef public object write
    cdef public long long tick
    cdef public long long room
    cdef public bint alive
    cdef public bint closing

    # The callbacks of every echo, with their arithmetic in C.
    @cython.locals(now=double, sent=double, rx=cython.longlong, b=Bench)
    cpdef on_message(self, ws, message)
    @cython.locals(tx=cython.longlong, b=Bench)
    cpdef bint _write_next(self, double stamp) except -1

cdef class Bench:
    # the arguments, as given
    cdef public object uri
    cdef public object connections
    cdef public object duration
    cdef public object messages
    cdef public object sizes
    cdef public object binary
    cdef public object mode
    cdef public object window
    cdef public object rate
    cdef public object progress
    cdef public object warmup
    cdef public bint verify
    cdef public object deflate
    cdef public object precise_timer
    cdef public object open_timeout
    cdef public object close_timeout
    cdef public object progress_stream
    # what the callbacks read and count
    cdef public list payloads
    cdef public long long npayloads
    cdef public bint closed_loop
    cdef public bint batch
    cdef public long long tick
    cdef public list clients
    cdef public list live
    cdef public set backlogged
    cdef public object hist
    cdef public object lag
    cdef public bint recording
    cdef public bint sending
    cdef public object budget
    cdef public long long inflight
    cdef public long long received
    cdef public long long sent
    cdef public long long bytes_received
    cdef public long long bytes_sent
    cdef public long long lost
    cdef public object errors
    cdef public long long unexpected_closes
    cdef public object close_codes
    cdef public list series
    cdef public object _done
    cdef public double _tick_at
    cdef public long long _tick_count
    cdef public bint _stopped
