"""Redis connections handed out without redis-py's per-command pool checkout, for the broker's scripts.

Why: a redis-py client checks a connection out of its pool for every command and returns it after.
The checkout takes the pool's lock, which every thread of the process shares, checks the process id
(a system call) and probes the connection with a non-blocking read; the return takes the lock
again. With eight worker threads each acking the message it just ran, those lock hand-offs and GIL
releases were about 40% of the context switches a message costs, and context switches are where
most of a worker's system time goes; a producer's `send()` paid the same checkout, uncontended.

`ConnectionStack` keeps clients of one connection each (redis-py's `single_connection_client`,
made from the broker's client's pool: the same address, credentials, timeouts, protocol and
retries) on a stack: a command takes the top one, or makes one when every client is in use, and
puts it back after. A list's `pop` and `append` are atomic under the GIL, so taking one costs no
lock and no system call. There are never more connections than commands ever ran at the same time
(as with the pool), whichever threads ran them: threads that come and go (an API's request threads)
hold none between their commands.

What changes against the pool: a connection is not probed before a command. One that Redis closed
while it was idle (a Redis restart, an idle timeout) fails its next command, and redis-py's retry
(the broker's client has the default one) opens it again and sends the command again, as it does
for a pooled connection that fails mid-command; a client built without retries raises that once.
After a fork the child starts with an empty stack: the clients it inherited are the parent's, and
dropping them there does not touch their sockets (the pool resets itself in a new process and does
not know them, so it closes nothing).

A client that is not redis-py's plain `Redis` (a cluster client, a subclass, a test double) is used
as it is, with whatever pooling it does.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import redis
from redis.commands.core import Script


class ConnectionStack:
    """Clients of one connection each, from `client`'s pool, taken for a script and given back.

    :param client: the broker's client; its pool supplies the connections, and a client that is
      not a plain `redis.Redis` is used as it is.

    Example::

        connections = ConnectionStack(client=redis.Redis())
        ping = connections.shared.register_script("return redis.call('PING')")
        connections.run(ping, keys=[], args=[])     # on the top idle connection, or a new one
    """

    def __init__(self, *, client: redis.Redis) -> None:
        self.shared = client
        self._own = type(client) is redis.Redis
        self._idle: list[redis.Redis] = []
        if self._own:
            _forget_after_fork(self)

    def run(self, script: Script, *, keys: list[Any], args: list[Any]) -> Any:
        """Run `script` on a connection no other command is using (connecting may raise `RedisError`).

        A command that raised leaves its connection closed, back in the pool: whatever it left
        unread (an exception between sending and reading) is never read as another command's reply.
        """
        if not self._own:
            return script(keys=keys, args=args)
        try:
            client = self._idle.pop()
        except IndexError:
            client = redis.Redis(connection_pool=self.shared.connection_pool, single_connection_client=True)
        try:
            result = script(keys=keys, args=args, client=client)
        except BaseException:
            _discard(client)
            raise
        self._idle.append(client)
        return result

    def idle(self) -> int:
        """Connections waiting for a command."""
        return len(self._idle)

    def _forget(self) -> None:
        self._idle = []


def _discard(client: redis.Redis) -> None:
    connection = client.connection
    if connection is not None:
        connection.disconnect()  # type: ignore[no-untyped-call]
    client.close()  # gives the connection back to the pool, which opens it again when it is next taken


def _forget_after_fork(connections: ConnectionStack) -> None:
    """In a forked child, drop the clients the parent had (their sockets are the parent's)."""
    ref = weakref.ref(connections)

    def forget() -> None:
        alive = ref()
        if alive is not None:
            alive._forget()

    os.register_at_fork(after_in_child=forget)
