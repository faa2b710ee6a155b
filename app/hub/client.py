"""HTTP to the hub: one session, timeouts, credentials for the hub's host only, retries with backoff."""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from app import __version__
from app.core.config import HubConfig
from app.core.errors import AuthError, HubError, HubTimeout, Interrupted, NotPublishedError
from app.core.secrets import resolve_credentials, safe_url
from app.core.timeutil import get_zone
from app.hub import transport
from app.hub.listing import Listing, ListingNotJSON, decode_listing

log = logging.getLogger("datahubsync.hub")

RETRY_STATUS = {408, 429} | set(range(500, 600))
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 600.0


LIST_MAX_BYTES = 8 << 20        # the dataset list's body: thousands of entries fit; a runaway body does not
DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def describe_status(status: int, url: str) -> str:
    if status in (401, 403):
        return (f"the hub refused the credentials (HTTP {status}) at {safe_url(url)}; "
                "check hub.token / DATAHUB_TOKEN(_FILE) or the hub.headers (Cloudflare Access service token)")
    return f"HTTP {status} from {safe_url(url)}"


class HubClient:
    """Every request to the hub goes through `request`, which retries what is worth retrying."""

    def __init__(self, config: HubConfig, *, stop: threading.Event | None = None,
                 sleep: Callable[[float], None] | None = None, pool_size: int = 8):
        if not config.url:
            raise HubError("hub.url is not set")
        self.config = config
        self.url = config.url
        self.stop = stop or threading.Event()
        self._sleep = sleep
        self.credentials = resolve_credentials(config)
        self.zone = get_zone(config.timezone)
        self.session = requests.Session()
        self.session.trust_env = True
        self.session.headers["User-Agent"] = f"datahubsync/{__version__}"
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = config.verify_tls
        if config.verify_tls is False:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS certificates of the hub are not verified (hub.verify_tls: false)")
        self._hub_origin = self._origin(self._prepare(config.url, None))

    def close(self) -> None:
        self.session.close()

    # ---- low level ------------------------------------------------------------------------------

    def _prepare(self, url: str, headers: dict[str, str] | None) -> requests.PreparedRequest:
        """The request exactly as the session will send it (URL normalised by the HTTP library)."""
        try:
            return self.session.prepare_request(requests.Request("GET", url, headers=headers))
        except (requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
            raise HubError(f"cannot request {safe_url(url)}: invalid URL ({type(exc).__name__})") from None

    def _origin(self, prepared: requests.PreparedRequest) -> Origin:
        """(scheme, host, port) of the server the HTTP library will connect to for this request.

        Asked of the library itself, never of a second URL parser: `http://a:1\\@b:2/` is `b:2` to
        urllib.parse but `a:1` to urllib3, and credentials must follow where the bytes really go."""
        url = prepared.url or ""
        adapter = self.session.get_adapter(url)
        params: dict[str, Any] = {}
        build = getattr(adapter, "build_connection_pool_key_attributes", None)
        if build is not None:
            params, _ = build(prepared, self.session.verify, None)
        else:                                           # requests < 2.32.2: the same stdlib parse it used
            parts = urlsplit(url)
            params = {"scheme": parts.scheme, "host": parts.hostname, "port": parts.port}
        scheme = str(params.get("scheme") or "").lower()
        host = str(params.get("host") or "").lower()
        return scheme, host, int(params.get("port") or DEFAULT_PORTS.get(scheme, 0))

    def _send(self, url: str, headers: dict[str, str] | None, stream: bool,
              read_timeout: float | None) -> requests.Response:
        """One logical request: redirects followed by hand so credentials go to the hub's origin only.

        A redirect to another origin (scheme, host or port) is followed without any credential."""
        for _ in range(MAX_REDIRECTS + 1):
            prepared = self._prepare(url, headers)
            scheme = (prepared.url or "").split(":", 1)[0].lower()
            origin = self._origin(prepared) if scheme in ("http", "https") else (scheme, "", 0)
            if origin[0] not in ("http", "https") or not origin[1]:
                raise HubError(f"refusing to request {safe_url(url)}: only http:// and https:// URLs are used")
            if origin == self._hub_origin:
                prepared.headers.update(self.credentials)
            settings = self.session.merge_environment_settings(prepared.url, {}, stream, self.session.verify, None)
            response = self.session.send(prepared, allow_redirects=False,
                                         timeout=(self.config.connect_timeout, read_timeout or self.config.timeout),
                                         **settings)
            if response.status_code not in REDIRECTS or "Location" not in response.headers:
                return response
            target = urljoin(prepared.url or url, response.headers["Location"])
            response.close()
            log.debug("redirected from %s to %s", safe_url(url), safe_url(target))
            url = target
        raise HubError(f"too many redirects starting at {safe_url(url)}")

    def wait(self, seconds: float) -> None:
        """Sleep, but wake (and raise Interrupted) as soon as a stop is requested."""
        if self._sleep is not None:
            self._sleep(seconds)
        elif self.stop.wait(seconds):
            raise Interrupted("stopped by signal")
        if self.stop.is_set():
            raise Interrupted("stopped by signal")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        delay: float = min(self.config.backoff_max, self.config.backoff * (2 ** attempt))
        delay = delay * (0.5 + random.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def request(self, url: str, *, headers: dict[str, str] | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), what: str = "request",
                read_timeout: float | None = None, retries: int | None = None) -> requests.Response:
        """GET with retries. Returns a response whose status is in `ok`; raises HubError otherwise."""
        attempts = (self.config.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            if self.stop.is_set():
                raise Interrupted("stopped by signal")
            retry_after = None
            timed_out = False
            try:
                response = self._send(url, headers, stream, read_timeout)
            except requests.exceptions.SSLError as exc:
                raise HubError(f"TLS error talking to {safe_url(url)}: {transport.reason(exc)} (see hub.verify_tls)") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                problem = f"cannot reach the hub at {safe_url(url)}: {transport.reason(exc)}"
                timed_out = transport.is_timeout(exc)
            except (requests.exceptions.RequestException, OSError) as exc:
                raise HubError(f"request to {safe_url(url)} failed: {transport.reason(exc)}") from None
            else:
                status = response.status_code
                if status in ok:
                    return response
                response.close()
                if status in (401, 403):
                    raise AuthError(describe_status(status, url))
                if status == 404:
                    raise NotPublishedError(f"HTTP 404 for {safe_url(url)}")
                if status not in RETRY_STATUS:
                    raise HubError(describe_status(status, url))
                problem = describe_status(status, url)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt + 1 >= attempts:
                kind = HubTimeout if timed_out else HubError
                raise kind(f"{what} failed after {attempts} attempt(s): {problem}", retryable=True)
            delay = self.backoff(attempt, retry_after)
            log.warning("%s: %s; retrying in %.1fs (attempt %d of %d)", what, problem, delay, attempt + 2, attempts)
            self.wait(delay)
        raise AssertionError("unreachable")

    # ---- the list -------------------------------------------------------------------------------

    def list_datasets(self) -> Listing:
        url = self.url + "/api/datasets"
        try:
            response = self.request(url, stream=True, what="fetching the dataset list")
        except NotPublishedError:
            raise HubError(f"the hub answered 404 for {safe_url(url)}: is hub.url right? "
                           "(it should be the hub's base URL, without /api/datasets)") from None
        with response:
            body = self._read_list_body(response, url)
        try:
            listing, warnings = decode_listing(body, self.url, self.zone)
        except ListingNotJSON:
            kind = _printable(response.headers.get("Content-Type", "unknown type"))
            start = _printable(body[:60].decode("utf-8", "replace").strip())
            raise HubError(f"the hub's answer at {safe_url(url)} is not JSON ({kind}, starts with {start!r}); "
                           "a proxy or login page may be in the way") from None
        for warning in warnings:
            log.warning(warning)
        return listing

    def _read_list_body(self, response: requests.Response, url: str) -> bytes:
        """The list's body, refused past LIST_MAX_BYTES (announced or received) or after hub.timeout."""
        too_big = HubError(f"the hub's dataset list at {safe_url(url)} is larger than {LIST_MAX_BYTES >> 20} MiB; "
                           "refusing it (is hub.url the hub's base URL?)")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > LIST_MAX_BYTES:
            raise too_big
        deadline = time.monotonic() + self.config.timeout
        body = bytearray()
        try:
            for chunk in response.iter_content(64 << 10):
                body += chunk
                if len(body) > LIST_MAX_BYTES:
                    raise too_big
                if time.monotonic() > deadline:
                    raise HubError(f"the hub's dataset list at {safe_url(url)} took longer than hub.timeout "
                                   f"({self.config.timeout:g}s) to arrive", retryable=True)
        except requests.exceptions.RequestException as exc:
            raise HubError(f"reading the dataset list from {safe_url(url)} failed: {transport.reason(exc)}",
                           retryable=True) from None
        return bytes(body)


def _printable(text: str) -> str:
    """Text from the hub made safe for a one-line message (no control characters)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
