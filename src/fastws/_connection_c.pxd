# Compiled from _connection_py.py (see setup.py): these declarations make
# Connection an extension type, its attributes C struct fields instead of
# slots looked up through the type. The source stays plain Python; nothing
# here changes what it does. Keep the fields in step with Connection.__init__.

cdef class Connection:
    cdef public object codec
    cdef public bint is_client
    cdef public object max_frame_size
    cdef public object max_message_size
    cdef public object state
    cdef public object deflate
    cdef public object parser
    cdef public bint writable
    cdef public object close_sent
    cdef public object close_received
    cdef public bint eof_received
    cdef public object error
    cdef public object _encode_message
    cdef public object _encode_frame
    cdef public list _outgoing
    cdef public object _pong
    cdef public object _sending_fragments
    cdef object __weakref__

    # Called by the compiled asyncio core once or more per message: C calls
    # from there (cpdef), or within Connection only (cdef).
    cpdef receive_data(self, data, size=*)
    cpdef receive_buffer(self, min_size=*)
    cpdef receive_into(self, size)
    cdef _frames_received(self, list frames)
    cdef bint _input_ignored(self)
    cpdef data_to_send(self)
    cpdef send(self, message)
    cpdef send_buffers(self, message)
    cpdef send_prepared(self, prepared)
