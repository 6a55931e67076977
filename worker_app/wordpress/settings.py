"""Operator configuration of the WordPress clone, read once from the worker's environment.

| variable | default | meaning |
|---|---|---|
| `CLONE_ALLOWED_HOSTS` | (empty: all refused) | hosts a job may read or write (1) |
| `CLONE_ALLOWED_NETWORKS` | (empty) | CIDRs exempt from the refusal of non-public addresses (2) |
| `CLONE_HTTP_CONNECT_TIMEOUT` | `10` | seconds to open a connection |
| `CLONE_HTTP_TIMEOUT` | `30` | seconds to wait for response bytes (between bytes, not in total) |
| `CLONE_HTTP_RETRIES` | `3` | retries of a request after a timeout, connection error, 429 or 5xx |
| `CLONE_HTTP_BACKOFF` | `1` | seconds before the first retry; doubled each retry, with jitter |
| `CLONE_HTTP_MAX_BACKOFF` | `60` | longest wait between retries (3) |
| `CLONE_MAX_RESPONSE_BYTES` | `20971520` | largest API response body read (20 MiB); larger fails the job |
| `CLONE_MAX_MEDIA_BYTES` | `104857600` | largest media file (100 MiB); a job's `max_media_bytes` can lower it |
| `CLONE_PER_PAGE` | `100` | items per page when listing (WordPress allows at most 100) |
| `CLONE_TLS_VERIFY` | `true` | verify the sites' TLS certificates |
| `CLONE_CA_FILE` | (unset) | CA bundle for the sites' certificates (a private CA) |
| `CLONE_USER_AGENT` | `wp-k8s-service-clone/1` | User-Agent of every request |
| `CLONE_CREDENTIALS_DIR` | (unset) | directory of credential files, a mounted Secret (4) |
| `WORDPRESS_AUTH_<SITE>` | (unset) | `username:application password` for one site (5) |

(1) Comma-separated: `blog.example.com`, `*.example.com` (any subdomain) or `*` (any host).
(2) Loopback, private, link-local and other non-public addresses are refused, checked on the
    resolved addresses and on every connection; e.g. `10.0.0.0/8` for in-cluster sites, or
    `127.0.0.0/8` for tests.
(3) A `Retry-After` asking for more fails the job as transient, so the message is retried later.
(4) One file per site, named after the host (`blog.example.com`) or host and port
    (`blog.example.com_8443`), holding `username:application password`. Read at each job: a
    rotated Secret applies without a restart.
(5) `<SITE>` is the host, plus `_PORT` when the URL has a port, upper-cased with every other
    character replaced by `_`: `WORDPRESS_AUTH_BLOG_EXAMPLE_COM`, `WORDPRESS_AUTH_127_0_0_1_8080`.

Credentials are looked up for the URL's host and port first, then for the host alone; the
environment wins over the directory. The target always needs credentials (an Application Password
of a user who can publish and upload); the source needs them only for drafts, private items and the
raw (unrendered) content. Credentials never travel in job arguments and are never logged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config.envparse import ConfigError, env_bool, env_float, env_int, env_list, env_str
from .credentials import AUTH_PREFIX, CredentialStore, parse_credentials

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
_IPV6_HOST = re.compile(r"^[0-9a-f:.]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class CloneSettings:
    """The operator's configuration of the clone, read once at start (the module docstring has the table).

    :param allowed_hosts: `CLONE_ALLOWED_HOSTS`.
    :param allowed_networks: `CLONE_ALLOWED_NETWORKS`.
    :param connect_timeout: `CLONE_HTTP_CONNECT_TIMEOUT`.
    :param read_timeout: `CLONE_HTTP_TIMEOUT`.
    :param retries: `CLONE_HTTP_RETRIES`.
    :param backoff_seconds: `CLONE_HTTP_BACKOFF`.
    :param max_backoff_seconds: `CLONE_HTTP_MAX_BACKOFF`.
    :param max_response_bytes: `CLONE_MAX_RESPONSE_BYTES`.
    :param max_media_bytes: `CLONE_MAX_MEDIA_BYTES`.
    :param per_page: `CLONE_PER_PAGE`.
    :param tls_verify: `CLONE_TLS_VERIFY`.
    :param ca_file: `CLONE_CA_FILE`.
    :param user_agent: `CLONE_USER_AGENT`.
    :param credentials: `WORDPRESS_AUTH_*` and `CLONE_CREDENTIALS_DIR`.

    Example::

        settings = CloneSettings.from_env({"CLONE_ALLOWED_HOSTS": "*.example.com"})
        run_clone(parse_clone_request(source, target, None), settings)
    """

    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_response_bytes: int = 20 * 1024 * 1024
    max_media_bytes: int = 100 * 1024 * 1024
    per_page: int = 100
    tls_verify: bool = True
    ca_file: str | None = None
    user_agent: str = "wp-k8s-service-clone/1"
    # repr=False: settings get logged and printed in tracebacks; the store redacts itself too.
    credentials: CredentialStore = field(default_factory=CredentialStore, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloneSettings:
        ca_file = env_str(env, "CLONE_CA_FILE")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError("CLONE_CA_FILE", f"file {ca_file} does not exist")
        credentials_dir = env_str(env, "CLONE_CREDENTIALS_DIR")
        if credentials_dir is not None and not Path(credentials_dir).is_dir():
            raise ConfigError("CLONE_CREDENTIALS_DIR", f"{credentials_dir} is not a directory")
        from_env = {}
        for name, value in env.items():
            if name.startswith(AUTH_PREFIX) and len(name) > len(AUTH_PREFIX):
                from_env[name[len(AUTH_PREFIX) :]] = parse_credentials(name, value)
        return cls(
            allowed_hosts=tuple(_host_pattern(item) for item in env_list(env, "CLONE_ALLOWED_HOSTS")),
            allowed_networks=tuple(_network(item) for item in env_list(env, "CLONE_ALLOWED_NETWORKS")),
            connect_timeout=env_float(env, "CLONE_HTTP_CONNECT_TIMEOUT", 10.0, minimum=0.1, maximum=600),
            read_timeout=env_float(env, "CLONE_HTTP_TIMEOUT", 30.0, minimum=0.1, maximum=3600),
            retries=env_int(env, "CLONE_HTTP_RETRIES", 3, minimum=0, maximum=20),
            backoff_seconds=env_float(env, "CLONE_HTTP_BACKOFF", 1.0, minimum=0, maximum=600),
            max_backoff_seconds=env_float(env, "CLONE_HTTP_MAX_BACKOFF", 60.0, minimum=0, maximum=3600),
            max_response_bytes=env_int(env, "CLONE_MAX_RESPONSE_BYTES", 20 * 1024 * 1024, minimum=1024),
            max_media_bytes=env_int(env, "CLONE_MAX_MEDIA_BYTES", 100 * 1024 * 1024, minimum=1),
            per_page=env_int(env, "CLONE_PER_PAGE", 100, minimum=1, maximum=100),
            tls_verify=env_bool(env, "CLONE_TLS_VERIFY", True),
            ca_file=ca_file,
            user_agent=_user_agent(env),
            credentials=CredentialStore(
                from_env=from_env, directory=Path(credentials_dir) if credentials_dir is not None else None
            ),
        )


def _user_agent(env: Mapping[str, str]) -> str:
    value = env_str(env, "CLONE_USER_AGENT", "wp-k8s-service-clone/1") or ""
    # A CR or LF would end the header and start another one (header injection).
    if any(not character.isprintable() for character in value):
        raise ConfigError(
            "CLONE_USER_AGENT", "must be printable text on one line (no CR, LF or other control characters)"
        )
    return value


def _host_pattern(item: str) -> str:
    lowered = item.lower().rstrip(".")
    if _HOST_PATTERN.match(lowered) or _IPV6_HOST.match(lowered.strip("[]")):
        return lowered.strip("[]")
    raise ConfigError(
        "CLONE_ALLOWED_HOSTS",
        f"{item!r} is not a host name, '*.' followed by a domain, or '*' (no scheme, port or path)",
    )


def _network(item: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ConfigError("CLONE_ALLOWED_NETWORKS", f"{item!r} is not an address or CIDR network") from None
