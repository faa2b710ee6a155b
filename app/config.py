"""Configuration: defaults < YAML file < environment < command line, validated into frozen dataclasses.

Every error names the key path (`datasets[1].mode: ...`) or the file and line, and is raised as
ConfigError (exit code 2).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .timeutil import get_zone

DEFAULT_CONFIG_PATH = "/config/config.yaml"
DATASET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
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


SECTIONS: dict[str, type] = {
    "hub": HubConfig, "sync": SyncConfig, "schedule": ScheduleConfig,
    "health": HealthConfig, "logging": LoggingConfig,
}


# ---- value checks: each takes (value, key path) and returns the normalised value ----------------

Check = Callable[[Any, str], Any]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str(nullable: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_type_name(value)} {value!r}")
        return value
    return check


def _number(kind: type, minimum: float | None = 0, nullable: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {_type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value!r}")
        return kind(value)
    return check


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _choice(options: tuple[str, ...], upper: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        text = value.upper() if upper and isinstance(value, str) else value
        if text not in options:
            quoted = " or ".join(f"'{o}'" for o in options) if len(options) == 2 else "one of " + ", ".join(f"'{o}'" for o in options)
            raise ConfigError(f"{key}: expected {quoted}, got {value!r}")
        return text
    return check


def _url(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    text = _str()(value, key).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {text!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: the hub URL takes no query or fragment, got {text!r}")
    return text.rstrip("/")


def _verify_tls(value: Any, key: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return _bool(value, key)
        if not os.path.exists(value):
            raise ConfigError(f"{key}: CA bundle {value!r} not found (true, false, or the path of a CA bundle)")
        return value
    raise ConfigError(f"{key}: expected true, false or a CA bundle path, got {_type_name(value)} {value!r}")


def _headers(value: Any, key: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of header names to values, got {_type_name(value)}")
    out = {}
    for name, val in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ConfigError(f"{key}: {name!r} is not a valid header name")
        out[name] = _str()(val, f"{key}.{name}")
    return MappingProxyType(out)


def _zone(nullable: bool) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        text = _str()(value, key)
        try:
            get_zone(text)
        except ValueError:
            raise ConfigError(f"{key}: unknown time zone {text!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return text
    return check


def _path(nullable: bool = False) -> Check:
    def check(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        text = _str()(value, key)
        if not text:
            raise ConfigError(f"{key}: expected a path, got an empty string")
        return Path(text)
    return check


def _cron(value: Any, key: str) -> str:
    from .crontab import CrontabError, parse_schedule   # the parser is only needed when a schedule is set
    text = _str()(value, key).strip()
    try:
        parse_schedule(text, tz=get_zone("UTC"))
    except CrontabError as exc:
        raise ConfigError(f"{key}: invalid cron expression {text!r}: {exc}") from None
    return text


CHECKS: dict[str, dict[str, Check]] = {
    "hub": {
        "url": _url, "token": _str(True), "token_file": _str(True), "headers": _headers,
        "timeout": _number(float, 1), "connect_timeout": _number(float, 0.1), "retries": _number(int, 0),
        "verify_tls": _verify_tls, "timezone": _zone(False), "connections": _number(int, 1),
        "backoff": _number(float, 0), "backoff_max": _number(float, 0),
    },
    "sync": {
        "data_root": _path(), "parallel": _number(int, 1), "state_dir": _path(True), "keep_packages": _bool,
        "max_delete_ratio": _number(float, 0), "package_wait": _number(float, 0), "package_poll": _number(float, 0.1),
        "stale_package_tolerance": _number(float, 0), "max_unpacked_size": _number(int, 1, nullable=True),
        "max_compression_ratio": _number(float, 1),
    },
    "schedule": {"cron": _cron, "timezone": _zone(True), "run_on_start": _choice(RUN_ON_START)},
    "health": {"max_age": _number(float, 1), "grace": _number(float, 0)},
    "logging": {"level": _choice(LEVELS, upper=True), "format": _choice(FORMATS), "file": _str(True)},
}
DATASET_CHECKS: dict[str, Check] = {
    "name": _str(), "local_dir": _path(True), "mode": _choice(MODES), "strip_components": _number(int, 0),
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
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(CHECKS[name])})")
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
                raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(DATASET_CHECKS)})")
        if "name" not in item:
            raise ConfigError(f"{where}.name: required")
        values = {key: DATASET_CHECKS[key](value, f"{where}.{key}") for key, value in item.items()}
        name = values["name"]
        if not DATASET_NAME.match(name) or name in (".", ".."):
            raise ConfigError(f"{where}.name: {name!r} is not a dataset name (letters, digits, '.', '_', '-')")
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
                 warnings: tuple[str, ...] = ()) -> Config:
    """Validate a config mapping (as loaded from YAML) into a Config."""
    data = dict(data or {})
    known = set(SECTIONS) | {"datasets"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(known))})")
    sections = {name: _section(name, data.get(name)) for name in SECTIONS}
    sync: SyncConfig = sections["sync"]
    datasets = _datasets(data.get("datasets"), sync.data_root)
    config = Config(datasets=datasets, source=source, warnings=warnings, **sections)
    state_dir = Path(os.path.normpath(config.state_dir))
    for i, ds in enumerate(datasets):
        if ds.mode == "mirror" and (state_dir == ds.local_dir or ds.local_dir in state_dir.parents):
            raise ConfigError(f"datasets[{i}].local_dir: mirror mode would replace {str(ds.local_dir)!r}, which holds the state directory {str(state_dir)!r}; choose another local_dir or sync.state_dir")
    return config


# ---- the file and the environment ---------------------------------------------------------------

def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_type_name(data)}")
    return data


ENV_KEYS = {
    "DATAHUB_URL": ("hub", "url"), "DATAHUB_TOKEN": ("hub", "token"), "DATAHUB_TOKEN_FILE": ("hub", "token_file"),
    "DATAHUB_TIMEOUT": ("hub", "timeout"), "DATAHUB_PARALLEL": ("sync", "parallel"),
    "DATAHUB_DATA_ROOT": ("sync", "data_root"), "DATAHUB_STATE_DIR": ("sync", "state_dir"),
    "DATAHUB_SCHEDULE": ("schedule", "cron"), "DATAHUB_LOG_LEVEL": ("logging", "level"),
    "DATAHUB_LOG_FORMAT": ("logging", "format"), "DATAHUB_LOG_FILE": ("logging", "file"),
}
# Read elsewhere (not config keys), so not typos.
OTHER_ENV = {"DATAHUB_CONFIG", "DATAHUB_DATASETS", "DATAHUB_CRONTAB"}
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
                raise ConfigError(f"DATAHUB_DATASETS: item {i + 1} {part!r} has an empty directory after '='")
            item["local_dir"] = local.strip()
        items.append(item)
    return items


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Overlay DATAHUB_* variables on the file's mapping; returns (mapping, warnings)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    warnings: list[str] = []

    def put(section: str, key: str, value: Any) -> None:
        current = data.get(section)
        data[section] = dict(current) if isinstance(current, dict) else {}
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
            if len(parts) != 2 or parts[0] not in CHECKS or parts[1] not in CHECKS[parts[0]] or parts[1] == "headers":
                raise ConfigError(f"{var}: names no configuration key (expected DATAHUB__SECTION__KEY, e.g. DATAHUB__HUB__RETRIES)")
            put(parts[0], parts[1], None if value.lower() in ("null", "~") else value)
        elif var not in OTHER_ENV:
            warnings.append(f"unknown environment variable {var} ignored (a typo?)")
    if headers:
        merged = dict((data.get("hub") or {}).get("headers") or {})
        merged.update(headers)
        put("hub", "headers", merged)
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
    return build_config(data, source=source, warnings=warnings)


def config_from(obj: Any) -> Config:
    """The Python API's view: a Config as is, or a dict validated without any environment."""
    if isinstance(obj, Config):
        return obj
    if isinstance(obj, dict):
        return build_config(obj)
    raise ConfigError(f"config: expected a dict or a Config, got {_type_name(obj)}")


def masked(config: Config) -> dict[str, Any]:
    """The effective config for the start-up log, secrets replaced."""
    out = {name: {f.name: getattr(getattr(config, name), f.name) for f in dataclasses.fields(SECTIONS[name])}
           for name in SECTIONS}
    hub = out["hub"]
    if hub["token"]:
        hub["token"] = "***"
    hub["headers"] = {k: "***" for k in config.hub.headers}
    for section in out.values():
        for key, value in section.items():
            if isinstance(value, Path):
                section[key] = str(value)
    out["datasets"] = [{"name": d.name, "local_dir": str(d.local_dir), "mode": d.mode} for d in config.datasets]
    return out
