"""Messages between an owner, its spawner and the spawner's helpers.

Each message is one pickled object in one ``SOCK_SEQPACKET`` datagram, with file
descriptors passed beside it (``SCM_RIGHTS``, see unix(7)). Both ends are processes of
the same program and the same user, so pickle is safe here.
"""

from __future__ import annotations

import array
import os
import pickle
import socket
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_MESSAGE", "recv_message", "send_message"]

#: The largest message either side sends: a plan is a few kilobytes.
MAX_MESSAGE = 1 << 20
_MAX_FDS = 8


def send_message(sock: socket.socket, obj: object, fds: Sequence[int] = ()) -> None:
    """Send one pickled object, with descriptors, as one SOCK_SEQPACKET message."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


_buffers = threading.local()
_ANCILLARY = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


def recv_message(sock: socket.socket) -> tuple[Any, list[int]] | None:
    """Receive one message sent by :func:`send_message`; None at end of file."""
    # Into a buffer kept by each thread: a fresh megabyte for each message (which is a
    # few kilobytes) costs an mmap and an mremap on the way of every container start.
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(MAX_MESSAGE)
    fds = array.array("i")
    size, anc, _flags, _addr = sock.recvmsg_into([buffer], _ANCILLARY)
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not size:
        for fd in fds:
            os.close(fd)
        return None
    return pickle.loads(memoryview(buffer)[:size]), list(fds)
