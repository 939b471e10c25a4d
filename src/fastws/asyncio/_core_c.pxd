# Compiled from _core_py.py (see setup.py): WebSocketCore as an extension type,
# its fields C struct members. The source stays plain Python; nothing here
# changes what it does. Keep the fields in step with WebSocketCore.__slots__.

cdef class WebSocketCore:
    cdef public object connection
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
