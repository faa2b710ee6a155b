"""Dataset hooks: `verify` against the staged tree before an install, `post_sync` after it.

A hook is an argv list (no shell) run in a process group of its own, with a timeout (SIGTERM to
the group, SIGKILL after a grace) and these variables over the program's environment:
DATAHUB_DATASET, DATAHUB_DIR, DATAHUB_VERSION, DATAHUB_PREVIOUS_VERSION (empty when none),
DATAHUB_STATUS ("success" after an install, "staged" for verify). Its output goes to the log line
by line. A post_sync run leaves <state_dir>/hooks/NAME.json until it finishes, so a run killed or
interrupted on the way runs again at the next start (resume_hooks). May import errors, fsutil,
timeutil.
"""
from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence
from urllib.parse import quote

from app.core.errors import ConfigError
from app.core.fsutil import atomic_write
from app.core.result import Status
from app.core.timeutil import to_iso, utcnow

log = logging.getLogger("datahubsync.hooks")

DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 315_360_000.0        # ten years, as every other duration in the config
KILL_GRACE = 5.0                  # seconds between SIGTERM and SIGKILL
KEYS = ("post_sync", "verify", "timeout")
MARKER_DIR = "hooks"
INSTALLED = Status.SUCCESS        # DATAHUB_STATUS of a post_sync run
STAGED = "staged"                 # DATAHUB_STATUS of a verify run
REJECTED = Status.REJECTED       # the result status when verify refuses the staged tree
_POLL = 0.05
_DRAIN = 2.0                      # seconds to wait for output still in the pipes once the hook exited
_LINE_LIMIT = 64 * 1024           # longer lines are logged in pieces


@dataclass(frozen=True)
class HooksConfig:
    post_sync: tuple[str, ...] | None = None
    verify: tuple[str, ...] | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class HookOutcome:
    ok: bool
    exit_code: int | None = None   # 128 + N when killed by signal N; None when it never started
    timed_out: bool = False
    error: str | None = None
    interrupted: bool = False      # stopped because `stop` was set: it did not finish


@dataclass(frozen=True)
class PendingHook:
    """A post_sync run that started and has not finished: what it needs to run again."""

    dataset: str
    dir: str
    version: str | None
    previous_version: str | None
    status: str
    started_at: str
    pid: int | None = None              # the run's process (and group), and when it started, so a
    pid_started: int | None = None      # run left behind by a killed sync can be told apart and stopped

    def environment(self) -> dict[str, str]:
        return hook_environment(self.dataset, self.dir, self.version, self.previous_version, self.status)


# ---- configuration -------------------------------------------------------------------------------

def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_hooks(raw: object, key: str = "hooks") -> HooksConfig:
    """Validate the YAML `hooks:` value: {post_sync: [argv...], verify: [argv...], timeout: seconds}."""
    if raw is None:
        return HooksConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping ({', '.join(KEYS)}), got {_type_name(raw)}")
    for name in raw:
        if name not in KEYS:
            raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(KEYS)})")
    timeout = raw.get("timeout")
    return HooksConfig(
        post_sync=_argv(raw.get("post_sync"), f"{key}.post_sync"),
        verify=_argv(raw.get("verify"), f"{key}.verify"),
        timeout=DEFAULT_TIMEOUT if timeout is None else _timeout(timeout, f"{key}.timeout"))


def _argv(value: object, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"{key}: expected an argv list, not a shell string "
                          f"(e.g. [\"/hooks/reload\", \"--quiet\"]; for shell syntax [\"sh\", \"-c\", \"...\"])")
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected an argv list of strings, got {_type_name(value)}")
    if not value:
        raise ConfigError(f"{key}: expected an argv list, got an empty list")
    argv = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ConfigError(f"{key}[{i}]: expected a string, got {_type_name(item)} {item!r}")
        text = str(item)
        if "\0" in text:
            raise ConfigError(f"{key}[{i}]: contains a NUL character")
        argv.append(text)
    if not argv[0].strip():
        raise ConfigError(f"{key}[0]: the program name is empty")
    return tuple(argv)


def _timeout(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected a number of seconds, got {_type_name(value)} {value!r}")
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        shown = repr(value[:40]) if isinstance(value, str) else "a huge integer"      # float() takes any float
        raise ConfigError(f"{key}: expected a number of seconds, got {shown}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    if seconds > MAX_TIMEOUT:
        raise ConfigError(f"{key}: at most {MAX_TIMEOUT:.0f} seconds (ten years), got {seconds:g}")
    return seconds


# ---- running one hook ----------------------------------------------------------------------------

def hook_environment(dataset: str, directory: str | os.PathLike[str], version: str | None,
                     previous_version: str | None, status: str) -> dict[str, str]:
    return {"DATAHUB_DATASET": dataset, "DATAHUB_DIR": os.fspath(directory),
            "DATAHUB_VERSION": version or "", "DATAHUB_PREVIOUS_VERSION": previous_version or "",
            "DATAHUB_STATUS": status}


def run_hook(argv: Sequence[str], env: Mapping[str, str], timeout: float, logger: logging.Logger,
             stop: threading.Event | None = None, *, name: str | None = None, grace: float = KILL_GRACE,
             dataset: str | None = None, on_start: Callable[[int], None] | None = None) -> HookOutcome:
    """Run `argv` with `env` over os.environ; never raises for a program that fails or cannot start.

    `on_start` gets the pid (also the process group id) as soon as the program runs.
    """
    label = f"{name} hook" if name else "hook"
    extra = {"dataset": dataset} if dataset else {}
    logger.info("%s: running %s", label, shlex.join(argv), extra=extra)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **env}, start_new_session=True)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        error = f"cannot start {argv[0]!r}: {reason}"
        logger.error("%s failed: %s", label, error, extra=extra)
        return HookOutcome(False, error=error)
    assert process.stdout is not None and process.stderr is not None
    if on_start is not None:
        on_start(process.pid)
    pumps = [_pump(process.stdout, label, "stdout", logger, extra),
             _pump(process.stderr, label, "stderr", logger, extra)]
    timed_out, interrupted = _supervise(process, started + timeout, stop, grace, logger, label, extra)
    drained = time.monotonic() + _DRAIN
    for pump in pumps:
        # A background child may still hold the pipes; its output is then left to the daemon threads.
        pump.join(max(0.0, drained - time.monotonic()))
    code = process.returncode
    exit_code = 128 - code if code < 0 else code
    if timed_out:
        error = f"timed out after {timeout:g} s"
    elif interrupted:
        error = "stopped before it finished"
    elif code < 0:
        error = f"killed by {_signal_name(-code)}"
    elif code:
        error = f"exit status {code}"
    else:
        logger.info("%s finished in %.1f s", label, time.monotonic() - started, extra=extra)
        return HookOutcome(True, exit_code=0)
    logger.error("%s failed: %s", label, error, extra=extra)
    return HookOutcome(False, exit_code, timed_out, error, interrupted)


def _supervise(process: subprocess.Popen[bytes], deadline: float, stop: threading.Event | None,
               grace: float, logger: logging.Logger, label: str, extra: dict[str, str]) -> tuple[bool, bool]:
    """Wait for the hook; past `deadline` or once `stop` is set, SIGTERM its group, later SIGKILL.

    Returns (timed out, interrupted).
    """
    timed_out = interrupted = False
    kill_at: float | None = None
    while process.poll() is None:
        now = time.monotonic()
        if kill_at is None and (now >= deadline or (stop is not None and stop.is_set())):
            timed_out, interrupted = now >= deadline, now < deadline
            logger.warning("%s: %s; sending SIGTERM", label, "timed out" if timed_out else "stopping", extra=extra)
            _signal_group(process.pid, signal.SIGTERM)
            kill_at = now + grace
        elif kill_at is not None and now >= kill_at:
            logger.warning("%s: still running %g s after SIGTERM; sending SIGKILL", label, grace, extra=extra)
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            break
        try:
            process.wait(_POLL)
        except subprocess.TimeoutExpired:
            pass
    if kill_at is not None:
        # What the hook started is part of the run that was stopped: nothing of it may linger.
        _signal_group(process.pid, signal.SIGKILL)
    return timed_out, interrupted


def _pump(stream: IO[bytes], label: str, stream_name: str, logger: logging.Logger,
          extra: dict[str, str]) -> threading.Thread:
    """Log each line of the hook's stdout or stderr as it comes (in the caller's logging context)."""
    line_extra = {**extra, "stream": stream_name}

    def drain() -> None:
        with stream:
            for raw in iter(lambda: stream.readline(_LINE_LIMIT), b""):
                line = raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
                logger.info("%s %s: %s", label, stream_name, line, extra=line_extra)

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(drain,), name=f"hook-{stream_name}", daemon=True)
    thread.start()
    return thread


def _signal_group(group: int, signum: int) -> None:
    # start_new_session made the hook a group leader: its pid is the group id.
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# ---- verify and post_sync ------------------------------------------------------------------------

def run_verify(hooks: HooksConfig, staged_dir: str | os.PathLike[str], dataset: str, version: str | None,
               previous: str | None, logger: logging.Logger, stop: threading.Event | None = None) -> HookOutcome | None:
    """Run the verify hook on the staged tree (None when none is configured).

    Anything but ok (a non-zero exit, a timeout, a program that cannot start) keeps the installed
    version and reports the dataset as REJECTED; an interrupted outcome is an interrupted sync.
    """
    if hooks.verify is None:
        return None
    env = hook_environment(dataset, staged_dir, version, previous, STAGED)
    return run_hook(hooks.verify, env, hooks.timeout, logger, stop, name="verify", dataset=dataset)


def marker_path(state_dir: Path, dataset: str) -> Path:
    return state_dir / MARKER_DIR / f"{quote(dataset, safe='')}.json"


def run_post_sync(hooks: HooksConfig, state_dir: Path, dataset: str, directory: str | os.PathLike[str],
                  version: str | None, previous: str | None, logger: logging.Logger,
                  stop: threading.Event | None = None, status: str = INSTALLED) -> HookOutcome | None:
    """Run the post_sync hook after an install (None when none is configured), marked as pending meanwhile."""
    if hooks.post_sync is None:
        return None
    pending = PendingHook(dataset, os.fspath(directory), version, previous, status, to_iso(utcnow()))
    path = marker_path(state_dir, dataset)
    _write_marker(path, pending, logger)
    return _run_pending(hooks.post_sync, hooks.timeout, pending, path, logger, stop)


def _write_marker(path: Path, pending: PendingHook, logger: logging.Logger) -> None:
    try:
        atomic_write(path, json.dumps(asdict(pending), indent=2).encode("utf-8") + b"\n")
    except OSError as exc:
        logger.warning("cannot record the pending post_sync hook in %s (%s): should this run be "
                       "interrupted, it will not run again", path, exc.strerror or exc,
                       extra={"dataset": pending.dataset})


def _run_pending(argv: tuple[str, ...], timeout: float, pending: PendingHook, path: Path,
                 logger: logging.Logger, stop: threading.Event | None) -> HookOutcome:
    def started(pid: int) -> None:
        _write_marker(path, replace(pending, pid=pid, pid_started=_process_start(pid)), logger)

    outcome = run_hook(argv, pending.environment(), timeout, logger, stop, name="post_sync",
                       dataset=pending.dataset, on_start=started)
    if not outcome.interrupted:
        _remove(path)
    return outcome


def _process_start(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, from /proc); None when gone or unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _stop_leftover(pending: PendingHook, logger: logging.Logger) -> None:
    """A sync killed while its hook ran leaves the hook running on its own: end it before the re-run."""
    if pending.pid is None or pending.pid_started is None or _process_start(pending.pid) != pending.pid_started:
        return
    logger.warning("the earlier post_sync run (pid %d) is still running on its own; stopping it first",
                   pending.pid, extra={"dataset": pending.dataset})
    _signal_group(pending.pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_GRACE
    while _process_start(pending.pid) == pending.pid_started and time.monotonic() < deadline:
        time.sleep(_POLL)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s (%s): the post_sync hook may run once more at the next start",
                    path, exc.strerror or exc)


def _read_marker(path: Path) -> PendingHook:
    """One marker file; ValueError (or OSError) when it cannot be used."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    optional = (str, type(None))
    for name, kinds in (("dataset", (str,)), ("dir", (str,)), ("status", (str,)), ("started_at", (str,)),
                        ("version", optional), ("previous_version", optional),
                        ("pid", (int, type(None))), ("pid_started", (int, type(None)))):
        value = data.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"field {name!r} is missing or of the wrong type")
    fields: dict[str, Any] = {name: data.get(name) for name in PendingHook.__dataclass_fields__}
    return PendingHook(**fields)


def _scan(state_dir: Path) -> list[tuple[Path, PendingHook | None]]:
    """Every marker file with what it holds (None: unusable, and warned about)."""
    folder = state_dir / MARKER_DIR
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError as exc:
        log.warning("cannot list pending hooks in %s (%s)", folder, exc.strerror or exc)
        return []
    found: list[tuple[Path, PendingHook | None]] = []
    for path in paths:
        try:
            found.append((path, _read_marker(path)))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            log.warning("pending hook marker %s is unusable (%s); it is dropped", path, reason)
            found.append((path, None))
    return found


def pending_hooks(state_dir: Path) -> list[PendingHook]:
    """The post_sync runs that started and never finished, in dataset-file order."""
    return [pending for _, pending in _scan(state_dir) if pending is not None]


def resume_hooks(hooks: HooksConfig, state_dir: Path, logger: logging.Logger,
                 stop: threading.Event | None = None) -> list[tuple[PendingHook, HookOutcome]]:
    """At start: run again each post_sync hook that did not finish, with the environment it had."""
    outcomes = []
    for path, pending in _scan(state_dir):
        if stop is not None and stop.is_set():
            break
        if pending is None:
            _remove(path)
            continue
        extra = {"dataset": pending.dataset}
        if hooks.post_sync is None:
            logger.warning("the post_sync hook for version %s did not finish, but none is configured now; "
                           "not running it again", pending.version, extra=extra)
            _remove(path)
            continue
        logger.info("the post_sync hook for version %s (started %s) did not finish; running it again",
                    pending.version, pending.started_at, extra=extra)
        _stop_leftover(pending, logger)
        outcomes.append((pending, _run_pending(hooks.post_sync, hooks.timeout, pending, path, logger, stop)))
    return outcomes
