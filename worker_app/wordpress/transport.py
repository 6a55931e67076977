"""A `requests` session whose every new connection is checked against the `HostPolicy`.

The check looks at the socket's actual peer, after connecting and before a byte is sent, so a host
name that resolved to a public address when the URL was checked and to a private one now is still
refused. Environment proxies and ~/.netrc are ignored (`trust_env = False`): a proxy would hide the
peer, and netrc could attach credentials that are not the ones configured for the clone.
"""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .safety import HostPolicy


def _guarded(base: type[HTTPConnection], policy: HostPolicy) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[valid-type,misc]  # a class built per policy
        def _new_conn(self) -> socket.socket:
            sock: socket.socket = super()._new_conn()
            try:
                policy.check_peer(str(self.host), str(sock.getpeername()[0]))
            except Exception:
                sock.close()
                raise
            return sock

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: HostPolicy, **kwargs: Any) -> None:
        self._policy = policy  # set first: HTTPAdapter.__init__ calls init_poolmanager
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        http_pool = type(
            "GuardedHTTPConnectionPool",
            (HTTPConnectionPool,),
            {"ConnectionCls": _guarded(HTTPConnection, self._policy)},
        )
        https_pool = type(
            "GuardedHTTPSConnectionPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": _guarded(HTTPSConnection, self._policy)},
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


def guarded_session(policy: HostPolicy, *, user_agent: str, verify: bool | str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = "application/json"
    # Retries are done by the client (it honours Retry-After and records a span per attempt).
    adapter = _GuardedAdapter(policy, max_retries=0, pool_connections=4, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
