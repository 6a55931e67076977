"""A Redis connection of its own per thread, out of the client's pool, for the commands of deliveries.

Why: a redis-py client checks a connection out of its pool for every command and returns it after.
The checkout takes the pool's lock, which every thread of the process shares, checks the process id
(a system call) and probes the connection with a non-blocking read; the return takes the lock
again. With eight worker threads each acking the message it just ran, those lock hand-offs and GIL
releases were about 40% of the context switches a message costs, and context switches are
where most of a worker's system time goes. A thread that keeps one connection (redis-py's
`single_connection_client`, on the same pool: the same address, credentials, timeouts, protocol
and retries) skips all of it; the commands and their replies are the same.

Where it is used: `HoldingRedisBroker` runs its delivery commands (fetch, ack, nack, settle, bury,
requeue, the recovery scripts) on the thread's connection. Enqueues keep the shared pool: they
come from producers' threads too (an API's request threads), which come and go.

Lifetime: a thread's connection goes back to the pool when the thread ends (its thread-local
storage goes, and the client releases its connection). After a fork the child starts with none: the
sockets it inherited are the parent's, and dropping them there does not touch them (the pool
resets itself in a new process and does not know them, so it closes nothing). A connection that
fails is closed and opened again by redis-py's retry, as a pooled one is.

A client that is not redis-py's plain `Redis` (a cluster client, a subclass, a test double) is used
as it is, with whatever pooling it does.
"""

from __future__ import annotations

import os
import threading
import weakref

import redis


class ThreadConnections:
    """Hands each thread its own client on one connection of `client`'s pool.

    :param client: the broker's client; its pool supplies the connections, and a client that is
      not a plain `redis.Redis` is handed out as it is.

    Example::

        connections = ThreadConnections(client=redis.Redis())
        script = connections.shared.register_script("return redis.call('PING')")
        script(client=connections.client())      # this thread's connection, reused from now on
    """

    def __init__(self, *, client: redis.Redis) -> None:
        self.shared = client
        self._own = type(client) is redis.Redis
        self._local = threading.local()
        if self._own:
            _forget_after_fork(self)

    def client(self) -> redis.Redis:
        """The calling thread's client (made on first use; connecting may raise `redis.RedisError`)."""
        if not self._own:
            return self.shared
        client: redis.Redis | None = getattr(self._local, "client", None)
        if client is None:
            client = redis.Redis(connection_pool=self.shared.connection_pool, single_connection_client=True)
            self._local.client = client
        return client

    def _forget(self) -> None:
        self._local = threading.local()


def _forget_after_fork(connections: ThreadConnections) -> None:
    """In a forked child, drop the connections the forking thread had (they are the parent's)."""
    ref = weakref.ref(connections)

    def forget() -> None:
        alive = ref()
        if alive is not None:
            alive._forget()

    os.register_at_fork(after_in_child=forget)
