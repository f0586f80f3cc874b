"""Loopback TCP probes: is a port served, is it free, pick a free one (topics guard, dev broker, tests)."""

from __future__ import annotations

import socket
from collections.abc import Sequence

__all__ = ["LOOPBACK", "find_free_port", "port_is_free", "port_is_open", "preferred_port"]

LOOPBACK = "127.0.0.1"


def port_is_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the JVM's server socket uses it: TIME_WAIT leftovers do not make a port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_is_open(port, host)


def find_free_port(host: str = LOOPBACK, exclude: Sequence[int] = ()) -> int:
    """A currently free TCP port on ``host`` chosen by the OS (never one of ``exclude``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise OSError("could not find a free TCP port")  # pragma: no cover


def preferred_port(preferred: int, host: str = LOOPBACK, exclude: Sequence[int] = ()) -> int:
    """``preferred`` if it is free, else any free port."""
    if preferred not in exclude and port_is_free(preferred, host):
        return preferred
    return find_free_port(host, exclude)
