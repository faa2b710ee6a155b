"""HTTP to the hub: one session, timeouts, credentials for the hub's host only, retries with backoff."""
from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from . import __version__
from .config import HubConfig
from .errors import AuthError, HubError, Interrupted, NotPublishedError
from .listing import Listing, parse_listing
from .secrets import resolve_credentials, safe_url
from .timeutil import get_zone

log = logging.getLogger("datahubsync.hub")

RETRY_STATUS = {408, 429} | set(range(500, 600))
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 600.0


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


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
        self._hub_origin = _origin(config.url)

    def close(self) -> None:
        self.session.close()

    # ---- low level ------------------------------------------------------------------------------

    def _headers_for(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if _origin(url) == self._hub_origin:
            headers.update(self.credentials)
        return headers

    def _send(self, url: str, headers: dict[str, str] | None, stream: bool,
              read_timeout: float | None) -> requests.Response:
        """One logical request: redirects followed by hand so credentials never leave the hub's host."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self.session.get(
                url, headers=self._headers_for(url, headers), stream=stream, allow_redirects=False,
                timeout=(self.config.connect_timeout, read_timeout or self.config.timeout))
            if response.status_code not in REDIRECTS or "Location" not in response.headers:
                return response
            target = urljoin(url, response.headers["Location"])
            response.close()
            if urlsplit(target).scheme not in ("http", "https"):
                raise HubError(f"the hub redirected {safe_url(url)} to an unsupported URL {safe_url(target)}")
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
        delay = min(self.config.backoff_max, self.config.backoff * (2 ** attempt))
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
                raise HubError(f"TLS error talking to {safe_url(url)}: {_reason(exc)} (see hub.verify_tls)") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                problem = f"cannot reach the hub at {safe_url(url)}: {_reason(exc)}"
                timed_out = isinstance(exc, (requests.exceptions.Timeout, requests.exceptions.ReadTimeout)) \
                    or "timed out" in str(exc).lower()
            except (requests.exceptions.RequestException, OSError) as exc:
                raise HubError(f"request to {safe_url(url)} failed: {_reason(exc)}") from None
            else:
                status = response.status_code
                if status in ok:
                    return response
                response.close()
                if status in (401, 403):
                    raise AuthError(describe_status(status, url), http_status=status)
                if status == 404:
                    raise NotPublishedError(f"HTTP 404 for {safe_url(url)}", http_status=404)
                if status not in RETRY_STATUS:
                    raise HubError(describe_status(status, url), http_status=status)
                problem = describe_status(status, url)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt + 1 >= attempts:
                error = HubError(f"{what} failed after {attempts} attempt(s): {problem}", retryable=True)
                error.timed_out = timed_out
                raise error
            delay = self.backoff(attempt, retry_after)
            log.warning("%s: %s; retrying in %.1fs (attempt %d of %d)", what, problem, delay, attempt + 2, attempts)
            self.wait(delay)
        raise AssertionError("unreachable")

    # ---- the list -------------------------------------------------------------------------------

    def list_datasets(self) -> Listing:
        url = self.url + "/api/datasets"
        try:
            response = self.request(url, what="fetching the dataset list")
        except NotPublishedError:
            raise HubError(f"the hub answered 404 for {safe_url(url)}: is hub.url right? "
                           "(it should be the hub's base URL, without /api/datasets)", http_status=404) from None
        try:
            document = json.loads(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown type")
            start = response.text[:60].strip().replace("\n", " ")
            raise HubError(f"the hub's answer at {safe_url(url)} is not JSON ({kind}, starts with {start!r}); "
                           "a proxy or login page may be in the way") from None
        listing, warnings = parse_listing(document, self.url, self.zone)
        for warning in warnings:
            log.warning(warning)
        return listing


def _reason(exc: Exception) -> str:
    """A short, secret-free reason from a requests exception (they nest deeply)."""
    text = str(exc)
    for marker in ("Failed to establish a new connection: ", "Caused by ", "Read timed out", "Connection refused"):
        if marker in text:
            if marker in ("Read timed out", "Connection refused"):
                return marker.lower() if marker == "Connection refused" else "read timed out"
            tail = text.split(marker, 1)[1]
            return tail.split("'))")[0].split("))")[0].strip(" ([]'\"") or type(exc).__name__
    return text[:200] or type(exc).__name__
