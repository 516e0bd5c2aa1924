"""Whether a server can listen where it was asked to, checked before it starts.

``callhub serve`` and ``callhub demo`` check their port first, so a busy one is
one clear line and exit status 2 rather than a server's start-up traceback
(uvicorn prints its own lines and exits 3). The check binds the address and
lets it go at once; a race with another process taking the port in between is
still caught by the server itself.
"""

from __future__ import annotations

import errno
import socket


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now, if it cannot."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot listen on {host}:{port}: {error.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use; choose another with --port"
            return f"cannot listen on {host}:{port}: {error.strerror}"
    return None


def base_url(host: str, port: int, *, tls: bool = False) -> str:
    """The URL a browser on this machine opens for a server listening on ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
