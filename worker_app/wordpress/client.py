"""A small WordPress REST API client: discovery, retries with backoff, pagination, size limits, spans.

Failure mapping (what the actor sees):
- 401, or a connection the `HostPolicy` refuses -> `InvalidJobArguments` (permanent, dead-lettered);
- timeouts, connection errors, 429 and 5xx still failing after `CLONE_HTTP_RETRIES` retries, or a
  `Retry-After` longer than `CLONE_HTTP_MAX_BACKOFF` -> `TransientJobError` (the message is retried);
- any other 4xx, or a body that is not the JSON expected -> `WordPressAPIError`, which the clone
  records against the one item concerned.

POSTs are retried only when the server cannot have acted on them (the connection was never made,
429, 503): a create that timed out may have happened, and retrying it would duplicate the item. The
job fails as transient instead, and the retried message finds the item by its slug.

Every attempt is a CLIENT span named after the method, with the OpenTelemetry HTTP attributes.
Credentials are only sent to the site's own origin and never appear in spans or messages.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from opentelemetry import trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..errors import InvalidJobArguments, TransientJobError
from .credentials import Credentials
from .safety import AddressRefused, HostPolicy
from .settings import CloneSettings

_tracer = trace.get_tracer("worker_app.wordpress")
#: Span attribute of each request: which site it went to (`source` or `target`).
SITE_ROLE = "wordpress.site.role"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_MESSAGE_LIMIT = 300

Params = Mapping[str, str | int]


class WordPressAPIError(Exception):
    """A 4xx (other than 401) or an unexpected body: a problem with one request, not the whole job."""

    def __init__(self, role: str, status: int, code: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{role}: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: WordPress's `data` object (e.g. `term_id` of an existing term for `term_exists`).
        self.data: Mapping[str, Any] = data or {}


class ResponseTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"response larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def header_int(self, name: str) -> int | None:
        try:
            return int(self.headers.get(name, ""))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[dict[str, Any]]
    #: X-WP-Total when the site sent it: more than len(items) means the listing was cut at the limit.
    total: int


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    url: str
    params: Params | None
    payload: Mapping[str, Any] | None
    data: bytes | None
    headers: Mapping[str, str] | None
    limit: int | None
    accept: str

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD")


class _Retry(Exception):  # internal control flow: never escapes the client
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class WordPressClient:
    """REST calls to one WordPress site: discovery, listings, reads and writes, each a CLIENT span.

    Requests go through the guarded `session` (the `policy` checks every connection), are retried
    after timeouts, connection errors, 429 and 5xx (honouring `Retry-After`, bounded by the settings),
    and answer `InvalidJobArguments` for what cannot succeed (401, a refused host) or
    `TransientJobError` for what may later.

    :param role: `source` or `target`, in messages and span attributes.
    :param site_url: the site's validated URL.
    :param settings: timeouts, retries, response limits, page size.
    :param policy: where connections may go.
    :param session: the guarded session (`transport.guarded_session`), shared by both sites.
    :param credentials: the site's Application Password, if any (sent only to this site).
    :param sleep: how to wait between retries (tests pass a recorder).

    Example::

        with guarded_session(policy, user_agent=settings.user_agent, verify=True) as session:
            client = WordPressClient(role="source", site_url=url, settings=settings, policy=policy,
                                     session=session, credentials=None)
            client.discover()
    """

    def __init__(
        self,
        *,
        role: str,
        site_url: str,
        settings: CloneSettings,
        policy: HostPolicy,
        session: requests.Session,
        credentials: Credentials | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.role = role
        self.site_url = site_url
        self._settings = settings
        self._policy = policy
        self._session = session
        self._credentials = credentials
        self._sleep = sleep
        self._origin = _origin(site_url)
        self._rest_route_mode = False
        self.requests_sent = 0

    @property
    def authenticated(self) -> bool:
        return self._credentials is not None

    # -- API discovery -------------------------------------------------------------------------

    def discover(self) -> None:
        """Find the REST API: /wp-json/ (pretty permalinks) or ?rest_route= (any permalink setting)."""
        for rest_route_mode in (False, True):
            self._rest_route_mode = rest_route_mode
            try:
                index = self.get_json("/", {"_fields": "namespaces"})
            except WordPressAPIError:
                continue
            if isinstance(index, dict) and "wp/v2" in (index.get("namespaces") or []):
                return
        raise InvalidJobArguments(
            f"{self.role} {self.site_url}: no WordPress REST API (wp/v2) at /wp-json/ or ?rest_route=/"
        )

    def route_url(self, route: str) -> str:
        if self._rest_route_mode:
            return f"{self.site_url}/?rest_route={quote(route, safe='/')}"
        return f"{self.site_url}/wp-json{route}"

    # -- JSON API ------------------------------------------------------------------------------

    def get_json(self, route: str, params: Params | None = None) -> Any:
        response = self._request("GET", self.route_url(route), params=params)
        return self._json(response)

    def post_json(
        self,
        route: str,
        payload: Mapping[str, Any] | None = None,
        *,
        params: Params | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self._request(
            "POST", self.route_url(route), params=params, payload=payload, data=data, headers=headers
        )
        body = self._json(response)
        if not isinstance(body, dict):
            raise WordPressAPIError(self.role, response.status, "unexpected_body", "expected a JSON object")
        return body

    def list_all(self, route: str, params: Params, *, limit: int) -> Listing:
        """Every item of a collection, page by page, up to `limit` items."""
        per_page = self._settings.per_page
        items: list[dict[str, Any]] = []
        total: int | None = None
        page = 1
        # Bounded by the limit, not by what the site claims, so a bogus X-WP-TotalPages cannot loop us.
        while len(items) < limit:
            response = self._request(
                "GET", self.route_url(route), params={**params, "page": page, "per_page": per_page}
            )
            batch = self._json(response)
            if not isinstance(batch, list):
                raise WordPressAPIError(self.role, response.status, "unexpected_body", "expected a list")
            items.extend(item for item in batch if isinstance(item, dict))
            total = response.header_int("X-WP-Total") if total is None else total
            pages = response.header_int("X-WP-TotalPages")
            if pages is None:
                pages = page + 1 if len(batch) >= per_page else page
            if not batch or page >= pages:
                break
            page += 1
        return Listing(items[:limit], max(total or 0, len(items)))

    def download(self, url: str, limit: int) -> tuple[bytes, str] | None:
        """A media file and its content type, or None when larger than `limit` bytes."""
        self._policy.check_url(f"{self.role} media", url)
        try:
            response = self._request("GET", url, limit=limit, accept="*/*")
        except ResponseTooLarge:
            return None
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        return response.body, content_type.split(";", 1)[0].strip()

    # -- transport -----------------------------------------------------------------------------

    def _json(self, response: ApiResponse) -> Any:
        try:
            return json.loads(response.body)
        except ValueError:
            raise WordPressAPIError(self.role, response.status, "invalid_json", "the response is not JSON") from None

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        payload: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
        accept: str = "application/json",
    ) -> ApiResponse:
        """One logical request: redirects (GET only, each hop checked), retries, error mapping."""
        call = _Call(method, url, params, payload, data, headers, limit, accept)
        for _hop in range(_MAX_REDIRECTS + 1):
            response = self._with_retries(call)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                return self._check_status(response)
            if method != "GET":
                raise WordPressAPIError(self.role, response.status, "redirected", "the site redirected a write request")
            # The Location carries its own query; every hop passes the same policy as the site URL.
            call = replace(call, url=urljoin(call.url, location), params=None)
            self._policy.check_url(f"{self.role} redirect", call.url)
        raise WordPressAPIError(self.role, 310, "too_many_redirects", f"more than {_MAX_REDIRECTS} redirects")

    def _with_retries(self, call: _Call) -> ApiResponse:
        settings = self._settings
        attempt = 0
        while True:
            try:
                return self._attempt(call, attempt)
            except _Retry as retry:
                if attempt >= settings.retries:
                    raise TransientJobError(
                        f"{self.role} {self._origin}: {retry.reason} (gave up after {attempt + 1} attempts)"
                    ) from None
                delay = retry.delay
                if delay is None:
                    backoff = min(settings.max_backoff_seconds, settings.backoff_seconds * 2**attempt)
                    delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
                elif delay > settings.max_backoff_seconds:
                    raise TransientJobError(
                        f"{self.role} {self._origin}: {retry.reason}, asked to retry after {delay:.0f} s"
                    ) from None
                self._sleep(delay)
                attempt += 1

    def _attempt(self, call: _Call, attempt: int) -> ApiResponse:
        parts = urlsplit(call.url)
        attributes: dict[str, str | int] = {
            HTTP_REQUEST_METHOD: call.method,
            URL_FULL: _without_userinfo(call.url),
            SERVER_ADDRESS: parts.hostname or "",
            SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
            SITE_ROLE: self.role,
        }
        if attempt:
            attributes[HTTP_REQUEST_RESEND_COUNT] = attempt
        with _tracer.start_as_current_span(call.method, kind=SpanKind.CLIENT, attributes=attributes) as span:
            self.requests_sent += 1
            with self._send(call, span) as raw:
                status = raw.status_code
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
                if status >= 400:
                    span.set_attribute(ERROR_TYPE, str(status))
                    span.set_status(Status(StatusCode.ERROR))
                body = self._receive(call, raw, span)
                if status == 429 or status >= 500:
                    if not call.idempotent and status not in (429, 503):
                        raise TransientJobError(f"{self.role} {self._origin}: HTTP {status} to a {call.method}")
                    raise _Retry(f"HTTP {status}", _retry_after(raw.headers.get("Retry-After")))
                return ApiResponse(status, raw.headers, body)

    def _send(self, call: _Call, span: trace.Span) -> requests.Response:
        # Credentials go only to the site's own origin (a media file on a CDN does not get them).
        auth = None
        if self._credentials is not None and _origin(call.url) == self._origin:
            auth = self._credentials.basic_auth()
        try:
            return self._session.request(
                call.method,
                call.url,
                params=call.params,
                json=call.payload,
                data=call.data,
                headers={"Accept": call.accept, **(call.headers or {})},
                auth=auth,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
                allow_redirects=False,
                stream=True,
            )
        except AddressRefused as error:
            _failed(span, "AddressRefused", str(error))
            raise InvalidJobArguments(f"{self.role} {self._origin}: {error}") from None
        except requests.ConnectTimeout:
            _failed(span, "ConnectTimeout")
            raise _Retry(f"connecting timed out after {self._settings.connect_timeout} s") from None
        except requests.Timeout:
            _failed(span, "ReadTimeout")
            reason = f"no response within {self._settings.read_timeout} s"
            if not call.idempotent:
                raise TransientJobError(f"{self.role} {self._origin}: {reason} to a {call.method}") from None
            raise _Retry(reason) from None
        except requests.ConnectionError as error:
            _failed(span, "ConnectionError")
            # Safe to retry for any method only when the connection was never made.
            if not call.idempotent and not _is_connect_failure(error):
                raise TransientJobError(f"{self.role} {self._origin}: connection lost during a {call.method}") from None
            raise _Retry("connection failed") from None

    def _receive(self, call: _Call, raw: requests.Response, span: trace.Span) -> bytes:
        limit = call.limit if call.limit is not None else self._settings.max_response_bytes
        try:
            return self._read_body(raw, limit)
        except requests.RequestException:
            _failed(span, "ReadError")
            if not call.idempotent:
                raise TransientJobError(
                    f"{self.role} {self._origin}: the response to a {call.method} was cut"
                ) from None
            raise _Retry("reading the response failed") from None
        except ResponseTooLarge:
            span.set_attribute(ERROR_TYPE, "ResponseTooLarge")
            if call.limit is not None:
                raise  # the caller's own limit (a media file): it decides
            raise InvalidJobArguments(
                f"{self.role} {self._origin}: a response exceeded CLONE_MAX_RESPONSE_BYTES "
                f"({self._settings.max_response_bytes} bytes)"
            ) from None

    def _read_body(self, raw: requests.Response, limit: int) -> bytes:
        declared = raw.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        for chunk in raw.iter_content(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_status(self, response: ApiResponse) -> ApiResponse:
        if response.status < 400:
            return response
        code, message, data = _error_details(response.body)
        if response.status == 401:
            if self._credentials is None:
                raise InvalidJobArguments(
                    f"{self.role} {self._origin}: the site requires credentials and none are configured "
                    f"for it (HTTP 401 {code})"
                )
            raise InvalidJobArguments(
                f"{self.role} {self._origin}: WordPress rejected the credentials from "
                f"{self._credentials.origin} (HTTP 401 {code}); check the user name and Application Password"
            )
        raise WordPressAPIError(self.role, response.status, code, message, data)


def _failed(span: trace.Span, error_type: str, description: str | None = None) -> None:
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _is_connect_failure(error: requests.ConnectionError) -> bool:
    # urllib3 raises NewConnectionError (wrapped in MaxRetryError) when the TCP connect itself failed.
    text = repr(error)
    return "NewConnectionError" in text or "Failed to establish a new connection" in text


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_details(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """WordPress's error `code`, `message` (shortened) and `data`; they describe the request, not secrets."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "http_error", body[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip() or "no body", {}
    if isinstance(parsed, dict):
        code = str(parsed.get("code") or "http_error")[:100]
        message = str(parsed.get("message") or "")[:_MESSAGE_LIMIT]
        data = parsed.get("data")
        return code, message, data if isinstance(data, dict) else {}
    return "http_error", "unexpected error body", {}
