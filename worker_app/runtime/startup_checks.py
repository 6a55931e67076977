"""Checks the supervisor makes at start, each failing with one line that names the variable.

Example::

    try:
        prepare_metrics_directory(settings.multiproc_dir)
    except ConfigError as error:
        logger.error("%s", error)    # "PROMETHEUS_MULTIPROC_DIR: cannot use /x: Not a directory"
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from ..config.envparse import ConfigError
from ..observability.metrics_dir import MetricsDirectory

#: Bind errors caused by the address rather than the port.
_HOST_ERRNOS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL})


def listen_problem(host: str, port: int, error: OSError) -> ConfigError:
    """The configuration error behind a failed bind of the metrics server.

    An address that does not resolve or is not this machine's is `METRICS_HOST`'s fault; a port in
    use or not allowed is `METRICS_PORT`'s.
    """
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror) or error.errno in _HOST_ERRNOS:
        return ConfigError("METRICS_HOST", f"cannot listen on {host!r} ({reason})")
    return ConfigError("METRICS_PORT", f"cannot listen on {host}:{port} ({reason})")


def prepare_metrics_directory(path: str, *, variable: str = "PROMETHEUS_MULTIPROC_DIR") -> None:
    """Create `path` (or empty it of earlier metric files) and prove that files can be written in it.

    Worker processes write their metric files there; a directory they cannot write would crash
    each of them with a traceback, so this is found at start instead.
    """
    try:
        MetricsDirectory(path).reset()
        probe = Path(path) / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(variable, f"cannot use {path} ({error.strerror or error})") from None
