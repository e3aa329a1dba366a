"""Published ports: a proxy on the host that reaches a port inside a network namespace.

Like rootlesskit's builtin port driver, the proxy listens on the host and, for each
connection, has a socket made *inside* the container's network namespace
(:mod:`containerlib.network.nssockets`: a socket keeps the namespace it was made in),
connects it to the container's port there and relays bytes both ways. No root, no NAT
rule, nothing on the host but the listening sockets. One I/O thread with a selector
(selectors, epoll(7)) relays every connection; TCP half-closes are passed on, and a
connection refused inside resets the client.

A TCP connection's bytes go from one socket to the other through a pipe, with splice(2),
so that they never reach user space (see :mod:`containerlib.network.relay`).

Example::

    with PortProxy(f"/proc/{running.pid}/ns/net") as proxy:
        port = proxy.publish(8080)
        urllib.request.urlopen(f"http://127.0.0.1:{port.host_port}/")
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import threading
from typing import Literal, Self

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.network.nssockets import socket_maker
from containerlib.network.relay import INSIDE_HOST, Relay, TcpListener, UdpListener

__all__ = ["HostListener", "PortProxy", "PublishedPort", "bind_host"]

#: Seconds after which a UDP client that sent and received nothing loses its inside socket.
UDP_IDLE = 60.0


@attrs.frozen(kw_only=True)
class PublishedPort:
    """A container port reachable from the host.

    Attributes:
        host_ip: the host address it listens on, for example ``"127.0.0.1"``.
        host_port: the host port (the one picked when none was asked for).
        container_port: the port inside the container's network namespace.
        protocol: ``"tcp"`` or ``"udp"``.
    """

    host_ip: str
    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"]


# -- relaying ------------------------------------------------------------------------------


# -- the proxy -----------------------------------------------------------------------------


def _check_port(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SpecError(f"publish {field}", f"must be a port number from 1 to 65535, not {value!r}")
    return value


@attrs.frozen(kw_only=True)
class HostListener:
    """A host socket bound for a port to publish (:func:`bind_host`), not yet relayed."""

    sock: socket.socket
    published: PublishedPort


def bind_host(
    container_port: int,
    host_port: int | None = None,
    protocol: str = "tcp",
    host_ip: str = "127.0.0.1",
) -> HostListener:
    """Bind (and, for TCP, listen on) the host side of a port to publish; the caller
    closes its socket unless it hands it to :meth:`PortProxy.publish`.

    Raises:
        SpecError: a bad port, protocol or address.
        ContainerSetupError: the host port is taken (``errno.EADDRINUSE``) or cannot be
            bound.
    """
    _check_port("container_port", container_port)
    if host_port is not None:
        _check_port("host_port", host_port)
    if protocol not in ("tcp", "udp"):
        raise SpecError("publish protocol", f'must be "tcp" or "udp", not {protocol!r}')
    try:
        address = ipaddress.ip_address(host_ip)
    except ValueError:
        raise SpecError("publish host_ip", f"must be an IP address, not {host_ip!r}") from None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    shown = f"[{address}]" if address.version == 6 else str(address)
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    listener = socket.socket(family, kind)
    try:
        if protocol == "tcp":
            # A port in TIME_WAIT from an earlier proxy may be reused at once.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((str(address), host_port or 0))
        if protocol == "tcp":
            listener.listen(128)
        listener.setblocking(False)
    except OSError as e:
        listener.close()
        raise ContainerSetupError(
            f"publish port {container_port}/{protocol}",
            e.errno or errno.EIO,
            "",
            f"host {shown}:{host_port or 0}",
        ) from e
    published = PublishedPort(
        host_ip=str(address),
        host_port=listener.getsockname()[1],
        container_port=container_port,
        protocol="tcp" if protocol == "tcp" else "udp",
    )
    return HostListener(sock=listener, published=published)


class PortProxy:
    """Publishes ports of a network namespace on the host, through a userspace proxy.

    Args:
        netns: the namespace: a path such as ``/proc/PID/ns/net`` or an open descriptor of
            one (the proxy keeps its own duplicate).
        udp_idle: seconds after which an idle UDP client's socket inside is closed.

    Raises:
        ContainerSetupError: the namespace could not be opened or joined.

    Example::

        with PortProxy(f"/proc/{running.pid}/ns/net") as proxy:
            web = proxy.publish(80, 8080)
            with proxy.connect(80) as sock: ...
    """

    def __init__(self, netns: int | str, *, udp_idle: float = UDP_IDLE) -> None:
        where = netns if isinstance(netns, str) else f"descriptor {netns}"
        try:
            if isinstance(netns, str):
                fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            else:
                fd = fcntl.fcntl(netns, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as e:
            raise ContainerSetupError(
                "open network namespace", e.errno or errno.EIO, "", where
            ) from e
        self._fd = fd
        try:
            self._maker = socket_maker(fd)
        except OSError as e:
            os.close(fd)
            if e.errno == errno.EPERM:
                where += ": only its owner (or root) may enter it"
            raise ContainerSetupError(
                "join network namespace", e.errno or errno.EIO, "", where
            ) from e
        self._lock = threading.Lock()
        self._closed = False
        self._relay = Relay(self._maker, udp_idle)
        self._ports: list[PublishedPort] = []

    @property
    def ports(self) -> list[PublishedPort]:
        """The ports published so far."""
        with self._lock:
            return list(self._ports)

    def publish(
        self,
        container_port: int,
        host_port: int | None = None,
        protocol: str = "tcp",
        host_ip: str = "127.0.0.1",
        *,
        listener: HostListener | None = None,
    ) -> PublishedPort:
        """Listen on ``host_ip:host_port`` and relay to ``container_port`` inside.

        Args:
            container_port: the port the container listens on (on its loopback or any
                address).
            host_port: the host port; ``None`` picks a free one.
            protocol: ``"tcp"`` or ``"udp"``.
            host_ip: the host address to listen on.
            listener: the host socket, bound already by :func:`bind_host` (then the three
                arguments before are not used): a caller can take the host ports before
                it makes the container, so that a taken port fails before anything runs.

        Returns:
            What was published, with the host port picked.

        Raises:
            SpecError: a bad port, protocol or address.
            ContainerSetupError: the host port is taken (``errno.EADDRINUSE``) or cannot be
                bound; or the proxy is closed.
        """
        if listener is None:
            listener = bind_host(container_port, host_port, protocol, host_ip)
        published = listener.published
        with self._lock:
            if self._closed:
                listener.sock.close()
                where = f"{published.host_ip}:{published.host_port}/{published.protocol}"
                raise ContainerSetupError(f"publish {where}", errno.EBADF, "", "proxy is closed")
            handler: TcpListener | UdpListener
            if published.protocol == "tcp":
                handler = TcpListener(self._relay, listener.sock, published.container_port)
            else:
                handler = UdpListener(self._relay, listener.sock, published.container_port)
            self._relay.call(lambda: self._relay.add(handler))
            self._ports.append(published)
            return published

    def connect(self, container_port: int, timeout: float | None = 10.0) -> socket.socket:
        """A TCP socket connected to ``container_port`` from inside the namespace.

        Args:
            container_port: the port to connect to on the container's loopback.
            timeout: seconds to wait for the connection; it also stays the socket's
                timeout (``None``: blocking).

        Returns:
            The connected socket; the caller closes it.

        Raises:
            SpecError: a bad port.
            ConnectionRefusedError: nothing listens on the port (an ``OSError``, as
                :func:`socket.create_connection` raises).
            TimeoutError: no connection within ``timeout``.
            ContainerSetupError: the proxy is closed.
        """
        _check_port("container_port", container_port)
        with self._lock:
            if self._closed:
                raise ContainerSetupError(
                    f"connect to port {container_port}", errno.EBADF, "", "proxy is closed"
                )
            sock = self._maker.make(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((INSIDE_HOST, container_port))
        except OSError as e:
            sock.close()
            what = f"connect to {INSIDE_HOST}:{container_port} in the container's network"
            if isinstance(e, TimeoutError):
                raise TimeoutError(f"{what}: timed out after {timeout} s") from None
            raise type(e)(e.errno, f"{what}: {e.strerror}") from None
        return sock

    def close(self) -> None:
        """Stop listening, close every relayed connection and end the helper thread or
        process. Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._relay.close()
        self._maker.close()
        os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
