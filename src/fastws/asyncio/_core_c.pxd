# Compiled from _core_py.py (see setup.py): WebSocketCore as an extension type,
# its fields C struct members. The source stays plain Python; nothing here
# changes what it does. Keep the fields in step with WebSocketCore.__slots__.

from fastws._connection_c cimport Connection as CompiledConnection


cdef class WebSocketCore:
    cdef public CompiledConnection connection
    cdef public object transport
    cdef public object listener
    cdef public bint is_client
    cdef public list _pending_writes
    cdef public bint _corked
    cdef public bint _reading_in_place
    cdef public object _receive_buffer
    cdef public bint _writelines
    cdef public object _passthrough
    cdef public object _keepalive
    cdef public object _waiter
    cdef public object _queue
    cdef public object _batch
    cdef public object _flow
    cdef public object loop
    cdef public bint writing_paused
    cdef public object _closed
    cdef public object _fragments_done

    # The per-message methods: C calls between each other; cdef where
    # nothing outside the core calls them.
    cdef _events_received(self, CompiledConnection connection, list events)
    cdef _dispatch_to_listener(self, list events)
    cdef _deliver(self, message)
    cpdef _write(self, data)
    cpdef _hold(self, data)
    cdef _write_buffers(self, list buffers)
    cpdef _flush(self)
