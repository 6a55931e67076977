"""Per-site WordPress credentials (user name + Application Password) from the environment or Secret files.

The password is wrapped so that no repr, log line, span attribute or exception message can show it
by accident: only `basic_auth()` hands it to the HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config.envparse import ConfigError
from ..errors import InvalidJobArguments

AUTH_PREFIX = "WORDPRESS_AUTH_"
_KEY_CHARS = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    _password: str = field(repr=False)
    #: Where they came from (a variable or file name), for messages; never the value.
    origin: str = ""

    def basic_auth(self) -> tuple[str, str]:
        return (self.username, self._password)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>, origin={self.origin!r})"


def parse_credentials(origin: str, raw: str) -> Credentials:
    """`username:application password`; Application Passwords contain spaces, kept as typed."""
    text = raw.strip()
    username, sep, password = text.partition(":")
    if not sep or not username.strip() or not password.strip():
        # The value is a secret: say what shape was expected, never what was found.
        raise ConfigError(origin, "expected 'username:application password'")
    return Credentials(username.strip(), password.strip(), origin)


def site_keys(host: str, port: int | None) -> tuple[str, ...]:
    """File names tried for a site, most specific first: `host_port` (explicit port), then `host`."""
    host = host.lower().strip("[]")
    return (f"{host}_{port}", host) if port is not None else (host,)


def env_key(file_key: str) -> str:
    """The `WORDPRESS_AUTH_` suffix for a file key: upper case, other characters as `_`."""
    return _KEY_CHARS.sub("_", file_key.upper())


class CredentialStore:
    """Credentials by site: variables parsed at start-up, files read at each lookup (rotation).

    :param from_env: credentials from `WORDPRESS_AUTH_<SITE>` variables, by `<SITE>` key.
    :param directory: `CLONE_CREDENTIALS_DIR`, one file per site, read at each lookup.

    Example::

        store = CredentialStore(from_env={}, directory=Path("/var/run/secrets/wordpress"))
        store.lookup("blog.example.com", 443)  # Credentials, or None
    """

    def __init__(self, *, from_env: Mapping[str, Credentials] | None = None, directory: Path | None = None):
        self._from_env = dict(from_env or {})
        self._directory = directory

    def __repr__(self) -> str:
        return f"CredentialStore(variables={len(self._from_env)}, directory={self._directory})"

    def lookup(self, host: str, port: int | None) -> Credentials | None:
        keys = site_keys(host, port)
        for key in keys:
            found = self._from_env.get(env_key(key))
            if found is not None:
                return found
        if self._directory is None:
            return None
        for key in keys:
            path = self._directory / key
            if path.is_file():
                try:
                    raw = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as error:
                    raise InvalidJobArguments(
                        f"credentials file {key} in CLONE_CREDENTIALS_DIR is unreadable ({type(error).__name__})"
                    ) from None
                try:
                    return parse_credentials(f"CLONE_CREDENTIALS_DIR/{key}", raw)
                except ConfigError as error:
                    raise InvalidJobArguments(str(error)) from None
        return None

    def describe(self, host: str, port: int | None) -> str:
        """Where an operator should put credentials for this site (for error messages)."""
        key = site_keys(host, port)[0]
        where = f"{AUTH_PREFIX}{env_key(key)}"
        if self._directory is not None:
            where += f" or a file {key} in CLONE_CREDENTIALS_DIR"
        return where
