"""Configuration: defaults < YAML file < environment < command line, validated into frozen dataclasses.

Every error names the key path (`datasets[1].mode: ...`) or the file and line, and is raised as
ConfigError (exit code 2).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

import urllib3.util
import yaml

from app.core.errors import ConfigError
from app.core.names import is_dataset_name

if TYPE_CHECKING:
    from app.observe.metrics import MetricsConfig
    from app.observe.notify import NotifyTarget
    from app.sync.hooks import HooksConfig
from app.core.secrets import clean_secret, control_problem, remember, safe_url, strip_line_break
from app.core.timeutil import get_zone

DEFAULT_CONFIG_PATH = "/config/config.yaml"
MAX_CONFIG_FILE = 4 * 2**20           # bytes; a config file is a few KiB, a bigger one is the wrong file
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")     # an HTTP token (RFC 9110)
HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
MODES = ("overlay", "mirror")
RUN_ON_START = ("missing", "always", "never")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")


@dataclass(frozen=True)
class HubConfig:
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 300
    connect_timeout: float = 10
    retries: int = 5
    verify_tls: bool | str = True
    timezone: str = "UTC"
    connections: int = 4          # concurrent ranged requests for one large package
    backoff: float = 1.0          # first retry delay (seconds); doubles each attempt, with jitter
    backoff_max: float = 60.0


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    local_dir: Path
    mode: str = "overlay"
    strip_components: int = 0


@dataclass(frozen=True)
class SyncConfig:
    data_root: Path = Path("/data")
    parallel: int = 2
    state_dir: Path | None = None
    keep_packages: bool = False
    max_delete_ratio: float = 0.5
    package_wait: float = 600
    package_poll: float = 30
    stale_package_tolerance: float = 900
    max_unpacked_size: int | None = None   # bytes; None = no fixed limit (free space still applies)
    max_compression_ratio: float = 1000    # per entry, against ZIP bombs


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str = "15 8 * * *"
    timezone: str | None = None
    run_on_start: str = "missing"


@dataclass(frozen=True)
class HealthConfig:
    max_age: float = 93600
    grace: float = 3600


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"
    file: str | None = None


@dataclass(frozen=True)
class Config:
    hub: HubConfig
    datasets: tuple[DatasetConfig, ...]
    sync: SyncConfig
    schedule: ScheduleConfig
    health: HealthConfig
    logging: LoggingConfig
    source: Path | None = None            # the YAML file, when one was read
    warnings: tuple[str, ...] = ()         # found while loading (unknown DATAHUB_* variables)
    metrics: MetricsConfig = field(default_factory=lambda: _observability()[0]())
    notify: tuple[NotifyTarget, ...] = ()
    hooks: HooksConfig = field(default_factory=lambda: _observability()[1]())

    @property
    def state_dir(self) -> Path:
        return self.sync.state_dir or self.sync.data_root / ".datahubsync"

    def missing(self) -> list[str]:
        """Settings a sync cannot run without (the daemon keeps running and reports them)."""
        gaps = []
        if not self.hub.url:
            gaps.append("hub.url is not set (set DATAHUB_URL or hub.url in the config file)")
        if not self.datasets:
            gaps.append("no datasets configured (set DATAHUB_DATASETS or datasets: in the config file)")
        return gaps

    def dataset(self, name: str) -> DatasetConfig:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise ConfigError(f"dataset {name!r} is not configured (configured: {', '.join(d.name for d in self.datasets) or 'none'})")


def _observability() -> tuple[type[MetricsConfig], type[HooksConfig]]:
    """The metrics and hooks config types (imported late: those modules build on this one)."""
    from app.observe.metrics import MetricsConfig
    from app.sync.hooks import HooksConfig
    return MetricsConfig, HooksConfig


# Sections parsed by the module that uses them (key -> its scalar keys settable as DATAHUB__SECTION__KEY).
OWN_SECTIONS = {"metrics": ("listen", "textfile", "pushgateway"), "hooks": ("timeout",), "notify": ()}


SECTIONS: dict[str, type] = {
    "hub": HubConfig, "sync": SyncConfig, "schedule": ScheduleConfig,
    "health": HealthConfig, "logging": LoggingConfig,
}


# ---- value checks: each takes (value, key path) and returns the normalised value ----------------

Check = Callable[[Any, str], Any]

DURATION_MAX = 10 * 365 * 86400       # seconds (10 years): longer waits and timeouts overflow the clocks they feed
COUNT_MAX = 64                        # parallel datasets, ranged connections: each is a thread and a socket
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlong = 40
_SHOW.maxlevel = 2
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxset = _SHOW.maxfrozenset = _SHOW.maxdict = 4


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    """A value for a message: one line and short, however long or deeply nested the value is."""
    try:
        text = _SHOW.repr(value)
    except Exception:                  # noqa: BLE001 - e.g. an int past the digit limit; the type still helps
        return f"<{_type_name(value)} too large to show>"
    return text if len(text) <= 200 else text[:200] + "..."


def _key(key: Any) -> str:
    """A mapping key as part of a key path: as is when it looks like a key, else quoted."""
    return key if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", key) else _show(key)


def _str(nullable: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return str(value)
            except ValueError:         # an int past the digit limit
                raise ConfigError(f"{key}: expected a string, got {_type_name(value)} {_show(value)}") from None
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_type_name(value)} {_show(value)}")
        return value
    return check


def _parse_number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    if re.fullmatch(r"[+-]?[0-9]+", text):   # digits past int()'s limit: larger than any bound
        return -(10 ** 5000) if text.startswith("-") else 10 ** 5000
    try:
        return float(text)
    except ValueError:
        return None


def _number(kind: type, minimum: float, maximum: float | None = None, nullable: bool = False) -> Check:
    """A finite int or float within [minimum, maximum]; strings (the environment's) are parsed."""
    noun = "an integer" if kind is int else "a number"

    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        number = _parse_number(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            got = _show(value) if isinstance(value, str) else f"{_type_name(value)} {_show(value)}"
            raise ConfigError(f"{key}: expected {noun}, got {got}")
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
        if kind is int and isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
            number = int(number)
        if number < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {_show(value)}")
        if maximum is not None and number > maximum:
            unit = " seconds (10 years)" if maximum == DURATION_MAX else ""
            raise ConfigError(f"{key}: must be at most {maximum}{unit}, got {_show(value)}")
        try:
            return kind(number)
        except OverflowError:          # an int beyond any float
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}") from None
    return check


def _duration(minimum: float) -> Check:
    return _number(float, minimum, DURATION_MAX)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ConfigError(f"{key}: expected true or false, got {_show(value)}")


def _choice(options: tuple[str, ...], upper: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        text = value.upper() if upper and isinstance(value, str) else value
        if not isinstance(text, str) or text not in options:
            quoted = " or ".join(f"'{o}'" for o in options) if len(options) == 2 else "one of " + ", ".join(f"'{o}'" for o in options)
            raise ConfigError(f"{key}: expected {quoted}, got {_show(value)}")
        return text
    return check


def _url_message(problem: str, text: str) -> str:
    """The problem and the URL without its user part (not even that when an '@' would remain)."""
    shown = safe_url(text)
    if "@" in shown:
        return problem
    return f"{problem}{', got' if problem.startswith('expected') else ' in'} {_show(shown)}"


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{_show(host)} is not an IPv6 address in brackets"
        return None
    if not host:
        return "expected an http:// or https:// URL with a host name"
    if not host.isascii():
        return "the host name must be ASCII (write an international name in its xn-- form)"
    if not HOST_NAME.fullmatch(host):
        return f"{_show(host)} is not a valid host name"
    return None


def _url_problem(text: str) -> str | None:
    """What is wrong with a hub URL, or None. Accepted URLs read the same to urllib.parse and to
    urllib3 (which requests connects with): same scheme, host and port."""
    if any(char.isspace() for char in text) or control_problem(text):
        return "contains whitespace or a control character"
    if "\\" in text:
        return "contains a backslash, which HTTP libraries read differently (percent-encode it as %5C)"
    if "?" in text or "#" in text:
        return "the hub URL takes no query or fragment"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "expected an http:// or https:// URL"
    authority = rest.split("/", 1)[0]
    if authority.count("@") > 1:
        return "more than one '@' before the host (percent-encode '@' in a user name or password as %40)"
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return "an IPv6 address without its closing ']'"
        host, after = hostport[:close + 1], hostport[close + 1:]
        if after and not after.startswith(":"):
            return f"unexpected {_show(after)} after the IPv6 address"
        port = after[1:]
    else:
        host, _, port = hostport.partition(":")
    problem = _host_problem(host)
    if problem:
        return problem
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "the port must be a number from 1 to 65535"
    try:
        ours, theirs = urlsplit(text), urllib3.util.parse_url(text)
        agree = (ours.scheme == (theirs.scheme or "").lower()
                 and ours.hostname == (theirs.host or "").lower().strip("[]") and ours.port == theirs.port)
    except (ValueError, urllib3.exceptions.LocationParseError):
        agree = False
    return None if agree else "HTTP libraries disagree on this URL's host or port; write it plainly"


def _url(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {_type_name(value)}")
    text = value.strip()
    problem = _url_problem(text)
    if problem:
        raise ConfigError(f"{key}: {_url_message(problem, text)}")
    userinfo = text.partition("://")[2].split("/", 1)[0].rpartition("@")[0]
    for part in (userinfo, userinfo.partition(":")[2] or userinfo):   # the password, or a lone user name (a token?)
        remember(part)
        remember(unquote(part))
    return text.rstrip("/")


def _masked_url(url: str | None) -> str | None:
    """The hub URL with its password (or a lone user name, often a token) replaced by ***."""
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user + ':***' if colon else '***'}@{hostport}{slash}{path}"


def _text_path(value: Any, key: str) -> str:
    """A path as text: not empty, no control characters (which no one means and which break log lines)."""
    text: str = _str()(value, key)
    if not text:
        raise ConfigError(f"{key}: expected a path, got an empty string")
    problem = control_problem(text)
    if problem:
        raise ConfigError(f"{key}: {_show(text)} {problem}")
    return text


def _verify_tls(value: Any, key: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return _bool(value, key)
        path = _text_path(value, key)
        if not os.path.exists(path):
            raise ConfigError(f"{key}: CA bundle {_show(path)} not found (true, false, or the path of a CA bundle)")
        return path
    raise ConfigError(f"{key}: expected true, false or a CA bundle path, got {_type_name(value)} {_show(value)}")


def _secret_text(value: Any, key: str) -> str:
    """A secret's type check; the message names the type, never the value."""
    if not isinstance(value, str):
        hint = " (quote it: YAML may have changed a number)" if isinstance(value, (int, float)) else ""
        raise ConfigError(f"{key}: expected a string{hint}, got {_type_name(value)}")
    return value


def _secret_file(value: Any, key: str) -> str | None:
    """A file holding a secret: one trailing line break dropped, as for the secrets themselves."""
    if value is None or value == "":
        return None
    return _text_path(strip_line_break(_secret_text(value, key)), key)


def _header_value(value: Any, key: str) -> str:
    """A header value, or 'file:PATH' to read it from at every run (checked there, by the same rules)."""
    text = _secret_text(value, key)
    reference = strip_line_break(text).strip()
    if reference.startswith("file:"):
        path = reference[5:].strip()
        if not path:
            raise ConfigError(f"{key}: 'file:' names no file")
        return "file:" + _text_path(path, key)
    return _known_secret(clean_secret(text, key))


def _known_secret(value: str) -> str:
    """Registered at load time too: the cron daemon never resolves credentials itself, yet logs its jobs' output."""
    remember(value)
    return value


def _token(value: Any, key: str) -> str | None:
    if value is None or value == "":  # an empty variable means no token
        return None
    return _known_secret(clean_secret(_secret_text(value, key), key))


def _headers(value: Any, key: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of header names to values, got {_type_name(value)}")
    out = {}
    for name, val in value.items():
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{key}: {_show(name)} is not a valid header name")
        out[name] = _header_value(val, f"{key}.{name}")
    return MappingProxyType(out)


def _zone(nullable: bool) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        text = _str()(value, key)
        try:
            get_zone(text)
        except ValueError:
            raise ConfigError(f"{key}: unknown time zone {_show(text)} (use an IANA name such as 'Asia/Shanghai')") from None
        return text
    return check


def _path(nullable: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        return Path(_text_path(value, key))
    return check


def _log_file(value: Any, key: str) -> str | None:
    return None if value is None or value == "" else _text_path(value, key)


def _cron(value: Any, key: str) -> str:
    from app.crontab.parser import CrontabError, parse_schedule  # the parser is only needed when a schedule is set
    text: str = _str()(value, key).strip()
    problem = control_problem(text.replace("\t", " "))      # tabs separate fields, as in a crontab
    if problem:
        raise ConfigError(f"{key}: {_show(text)} {problem}")
    try:
        parse_schedule(text, tz=get_zone("UTC"))
    except CrontabError as exc:
        raise ConfigError(f"{key}: invalid cron expression {_show(text)}: {' '.join(str(exc).split())}") from None
    return text


CHECKS: dict[str, dict[str, Check]] = {
    "hub": {
        "url": _url, "token": _token, "token_file": _secret_file, "headers": _headers,
        "timeout": _duration(1), "connect_timeout": _duration(0.1), "retries": _number(int, 0, 100),
        "verify_tls": _verify_tls, "timezone": _zone(False), "connections": _number(int, 1, COUNT_MAX),
        "backoff": _duration(0), "backoff_max": _duration(0),
    },
    "sync": {
        "data_root": _path(), "parallel": _number(int, 1, COUNT_MAX), "state_dir": _path(True), "keep_packages": _bool,
        "max_delete_ratio": _number(float, 0, 1), "package_wait": _duration(0), "package_poll": _duration(0.1),
        "stale_package_tolerance": _duration(0), "max_unpacked_size": _number(int, 1, 2**63 - 1, nullable=True),
        "max_compression_ratio": _number(float, 1),
    },
    "schedule": {"cron": _cron, "timezone": _zone(True), "run_on_start": _choice(RUN_ON_START)},
    "health": {"max_age": _duration(1), "grace": _duration(0)},
    "logging": {"level": _choice(LEVELS, upper=True), "format": _choice(FORMATS), "file": _log_file},
}
DATASET_CHECKS: dict[str, Check] = {
    "name": _str(), "local_dir": _path(True), "mode": _choice(MODES), "strip_components": _number(int, 0, 1024),
}


# ---- building ---------------------------------------------------------------------------------

def _section(name: str, raw: Any) -> Any:
    cls = SECTIONS[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {_type_name(raw)}")
    values = {}
    for key, value in raw.items():
        if key not in CHECKS[name]:
            raise ConfigError(f"{name}.{_key(key)}: unknown key (known: {', '.join(CHECKS[name])})")
        values[key] = CHECKS[name][key](value, f"{name}.{key}")
    return cls(**values)


def _datasets(raw: Any, data_root: Path) -> tuple[DatasetConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"datasets: expected a list of datasets, got {_type_name(raw)}")
    out: list[DatasetConfig] = []
    for i, item in enumerate(raw):
        where = f"datasets[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with 'name', got {_type_name(item)}")
        for key in item:
            if key not in DATASET_CHECKS:
                raise ConfigError(f"{where}.{_key(key)}: unknown key (known: {', '.join(DATASET_CHECKS)})")
        if "name" not in item:
            raise ConfigError(f"{where}.name: required")
        values = {key: DATASET_CHECKS[key](value, f"{where}.{key}") for key, value in item.items()}
        name = values["name"]
        if not is_dataset_name(name):
            raise ConfigError(f"{where}.name: {_show(name)} is not a dataset name (letters, digits, '.', '_', '-')")
        local = values.get("local_dir") or data_root / name
        values["local_dir"] = local if local.is_absolute() else data_root / local
        out.append(DatasetConfig(**values))
    _check_distinct(out)
    return tuple(out)


def _check_distinct(datasets: list[DatasetConfig]) -> None:
    seen: dict[str, int] = {}
    dirs: list[tuple[Path, int]] = []
    for i, ds in enumerate(datasets):
        if ds.name in seen:
            raise ConfigError(f"datasets[{i}].name: {ds.name!r} is listed twice (also datasets[{seen[ds.name]}])")
        seen[ds.name] = i
        here = Path(os.path.normpath(ds.local_dir))
        for other, j in dirs:
            if here == other or other in here.parents or here in other.parents:
                raise ConfigError(f"datasets[{i}].local_dir: {str(ds.local_dir)!r} overlaps datasets[{j}].local_dir {str(other)!r}; each dataset needs its own directory")
        dirs.append((here, i))


def build_config(data: Mapping[str, Any] | None, source: Path | None = None,
                 warnings: tuple[str, ...] = (), extra_notify: tuple[NotifyTarget, ...] = ()) -> Config:
    """Validate a config mapping (as loaded from YAML) into a Config."""
    from app.observe.metrics import parse_metrics
    from app.observe.notify import parse_notify
    from app.sync.hooks import parse_hooks
    data = dict(data or {})
    known = set(SECTIONS) | set(OWN_SECTIONS) | {"datasets"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{_key(key)}: unknown key (known: {', '.join(sorted(known))})")
    sections = {name: _section(name, data.get(name)) for name in SECTIONS}
    sync: SyncConfig = sections["sync"]
    datasets = _datasets(data.get("datasets"), sync.data_root)
    config = Config(datasets=datasets, source=source, warnings=warnings, metrics=parse_metrics(data.get("metrics")),
                    notify=parse_notify(data.get("notify")) + extra_notify, hooks=parse_hooks(data.get("hooks")),
                    **sections)
    state_dir = Path(os.path.normpath(config.state_dir))
    for i, ds in enumerate(datasets):
        if ds.mode == "mirror" and (state_dir == ds.local_dir or ds.local_dir in state_dir.parents):
            raise ConfigError(f"datasets[{i}].local_dir: mirror mode would replace {str(ds.local_dir)!r}, which holds the state directory {str(state_dir)!r}; choose another local_dir or sync.state_dir")
    return config


# ---- the file and the environment ---------------------------------------------------------------

def _file_name(path: Path) -> str:
    text = str(path)
    return _show(text) if control_problem(text) else text


def read_yaml(path: Path) -> dict[str, Any]:
    name = _file_name(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_FILE + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read config file: {getattr(exc, 'strerror', None) or exc}") from None
    except ValueError:                 # a NUL in the path
        raise ConfigError(f"{name}: cannot read config file: not a valid path") from None
    if len(raw) > MAX_CONFIG_FILE:
        raise ConfigError(f"{name}: cannot read config file: larger than {MAX_CONFIG_FILE // 2**20} MiB (the wrong file?)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {' '.join(problem.split())}") from None
    except RecursionError:
        raise ConfigError(f"{name}: invalid YAML: nested too deeply") from None
    except Exception as exc:          # noqa: BLE001 - the loader's own converters (dates, !!int ...) raise anything
        raise ConfigError(f"{name}: invalid YAML: a value cannot be read as its type "
                          f"({type(exc).__name__}; a bad date, or a !!tag that does not fit its value?)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping at the top level, got {_type_name(data)}")
    return data


ENV_KEYS = {
    "DATAHUB_URL": ("hub", "url"), "DATAHUB_TOKEN": ("hub", "token"), "DATAHUB_TOKEN_FILE": ("hub", "token_file"),
    "DATAHUB_TIMEOUT": ("hub", "timeout"), "DATAHUB_PARALLEL": ("sync", "parallel"),
    "DATAHUB_DATA_ROOT": ("sync", "data_root"), "DATAHUB_STATE_DIR": ("sync", "state_dir"),
    "DATAHUB_LISTEN": ("metrics", "listen"),
    "DATAHUB_SCHEDULE": ("schedule", "cron"), "DATAHUB_LOG_LEVEL": ("logging", "level"),
    "DATAHUB_LOG_FORMAT": ("logging", "format"), "DATAHUB_LOG_FILE": ("logging", "file"),
}
# Read elsewhere (not config keys), so not typos.
OTHER_ENV = {"DATAHUB_CONFIG", "DATAHUB_DATASETS", "DATAHUB_CRONTAB", "DATAHUB_NOTIFY_URL", "DATAHUB_NOTIFY_FORMAT",
             "DATAHUB_NOTIFY_ON", "DATAHUB_NOTIFY_SECRET_FILE"}
WELL_KNOWN_HEADERS = {"cf-access-client-id": "CF-Access-Client-Id", "cf-access-client-secret": "CF-Access-Client-Secret"}


def header_name(env_part: str) -> str:
    """DATAHUB_HEADER_CF_ACCESS_CLIENT_ID -> CF-Access-Client-Id."""
    dashed = env_part.replace("_", "-").lower()
    return WELL_KNOWN_HEADERS.get(dashed) or "-".join(p.capitalize() for p in dashed.split("-"))


def parse_datasets_env(text: str) -> list[dict[str, str]]:
    items = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, local = part.partition("=")
        item = {"name": name.strip()}
        if sep:
            if not local.strip():
                raise ConfigError(f"DATAHUB_DATASETS: item {i + 1} {_show(part)} has an empty directory after '='")
            item["local_dir"] = local.strip()
        items.append(item)
    return items


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Overlay DATAHUB_* variables on the file's mapping; returns (mapping, warnings)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    warnings: list[str] = []

    def put(section: str, key: str, value: Any) -> None:
        current = data.get(section)
        if current is not None and not isinstance(current, dict):
            return                     # the file's section is no mapping: build_config says so
        data[section] = dict(current or {})
        data[section][key] = value

    headers: dict[str, str] = {}
    for var in sorted(environ):
        value = environ[var]
        if not var.startswith("DATAHUB_"):
            continue
        if var in ENV_KEYS:
            put(*ENV_KEYS[var], value if value != "" or var != "DATAHUB_STATE_DIR" else None)
        elif var == "DATAHUB_DATASETS":
            data["datasets"] = parse_datasets_env(value)
        elif var.startswith("DATAHUB_HEADER_") and len(var) > len("DATAHUB_HEADER_"):
            rest = var[len("DATAHUB_HEADER_"):]
            if rest.endswith("_FILE") and len(rest) > 5:
                headers[header_name(rest[:-5])] = "file:" + value
            else:
                headers[header_name(rest)] = value
        elif var.startswith("DATAHUB__"):
            parts = var[len("DATAHUB__"):].lower().split("__")
            scalars = {**{k: tuple(v) for k, v in CHECKS.items()}, **OWN_SECTIONS}
            if len(parts) != 2 or parts[1] not in scalars.get(parts[0], ()) or parts[1] == "headers":
                raise ConfigError(f"{_key(var)}: names no configuration key (expected DATAHUB__SECTION__KEY, e.g. DATAHUB__HUB__RETRIES)")
            put(parts[0], parts[1], None if value.lower() in ("null", "~") else value)
        elif var not in OTHER_ENV:
            warnings.append(f"unknown environment variable {_key(var)} ignored (a typo?)")
    file_headers = data.get("hub", {}).get("headers") if isinstance(data.get("hub"), dict) else None
    if headers and (file_headers is None or isinstance(file_headers, dict)):   # else build_config says what is wrong
        put("hub", "headers", {**(file_headers or {}), **headers})
    return data, tuple(warnings)


def find_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("DATAHUB_CONFIG"):
        return Path(environ["DATAHUB_CONFIG"])
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.is_file() else None


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The effective configuration for the CLI: file (if any) + environment."""
    environ = os.environ if environ is None else environ
    source = find_config_path(path, environ)
    data = read_yaml(source) if source else {}
    data, warnings = apply_environment(data, environ)
    from app.observe.notify import notify_from_env
    env_target = notify_from_env(environ)
    return build_config(data, source=source, warnings=warnings, extra_notify=(env_target,) if env_target else ())


def config_from(obj: Any) -> Config:
    """The Python API's view: a Config as is, or a dict validated without any environment."""
    if isinstance(obj, Config):
        return obj
    if isinstance(obj, dict):
        return build_config(obj)
    raise ConfigError(f"config: expected a dict or a Config, got {_type_name(obj)}")


def masked(config: Config) -> dict[str, Any]:
    """The effective config for the start-up log, secrets replaced."""
    out: dict[str, Any] = {name: {f.name: getattr(getattr(config, name), f.name) for f in dataclasses.fields(SECTIONS[name])}
           for name in SECTIONS}
    hub = out["hub"]
    hub["url"] = _masked_url(config.hub.url)
    if hub["token"]:
        hub["token"] = "***"
    hub["headers"] = {k: "***" for k in config.hub.headers}
    for section in out.values():
        for key, value in section.items():
            if isinstance(value, Path):
                section[key] = str(value)
    out["datasets"] = [{"name": d.name, "local_dir": str(d.local_dir), "mode": d.mode} for d in config.datasets]
    out["metrics"] = {"listen": config.metrics.listen, "textfile": config.metrics.textfile,
                      "pushgateway": _masked_url(config.metrics.pushgateway)}
    out["notify"] = [f"{t.format} {t.origin} on {','.join(sorted(t.on))}" for t in config.notify]
    out["hooks"] = {"post_sync": bool(config.hooks.post_sync), "verify": bool(config.hooks.verify),
                    "timeout": config.hooks.timeout}
    return out
