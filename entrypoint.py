#!/usr/bin/env python3
"""DataHubSync command line: parse arguments, call the app, map errors to exit codes (nothing else)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from app import __version__
from app.core.errors import ConfigError, DataHubSyncError, ExitCode, LockedError
from app.core.timeutil import utcnow

if TYPE_CHECKING:                     # loaded only by the commands that need a config
    from app.core.config import Config

log = logging.getLogger("datahubsync")


@dataclass(frozen=True)
class Environment:
    """Everything a command takes from its surroundings: streams, variables, signals and the clock.
    The process's own by default; tests pass their own and call main() in-process."""

    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str]
    handle_signals: bool = True           # SIGTERM/SIGINT stop a run (main thread only; restored after)
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def of_process(cls) -> Environment:
        return cls(sys.stdout, sys.stderr, os.environ)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:   # usage errors: exit code 2, one line
        sys.stderr.write(f"datahubsync: error: {message} (see --help)\n")
        raise SystemExit(int(ExitCode.USAGE))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="datahubsync", description="Keep local copies of data hub datasets up to date.")
    parser.add_argument("--config", metavar="PATH", help="YAML config file (default: $DATAHUB_CONFIG, else /config/config.yaml)")
    parser.add_argument("--version", action="version", version=f"datahubsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sync = commands.add_parser("sync", help="sync the configured (or named) datasets once")
    sync.add_argument("names", nargs="*", metavar="NAME")
    sync.add_argument("--force", action="store_true", help="download even when up to date")
    sync.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    sync.add_argument("--skip-if-locked", action="store_true",
                      help="exit 0 (nothing to do) when another sync holds the lock, instead of 75")
    cron = commands.add_parser("cron", help="run the crontab forever (the container's default)")
    cron.add_argument("--crontab", metavar="PATH", help="supercronic-format crontab (default: $DATAHUB_CRONTAB, else schedule.cron)")
    cron.add_argument("--run-on-start", action="store_true", help="sync once at start")
    cron.add_argument("--test", action="store_true", help="validate the crontab and exit")
    cron.add_argument("--listen", metavar="ADDR",
                      help="serve /healthz, /readyz and /metrics on HOST:PORT or :PORT "
                           "(default: $DATAHUB_LISTEN, else metrics.listen; off when none is set)")
    commands.add_parser("check", help="pre-flight checks: config, crontab, hub, datasets, targets, disk")
    status = commands.add_parser("status", help="installed and remote versions per dataset")
    status.add_argument("--json", action="store_true")
    commands.add_parser("healthcheck", help="exit 0 when healthy (reads state only; for Docker HEALTHCHECK)")
    serve = commands.add_parser("serve", help="serve a folder of NAME.zip packages as a hub")
    serve.add_argument("directory", metavar="DIR")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=_port, default=8080)
    return parser


def _config(args: argparse.Namespace, env: Environment) -> Config:
    from app.core.config import load_config
    return load_config(args.config, env.environ)


def _setup_logs(env: Environment, config: Config | None = None) -> None:
    from app.core.logs import setup_logging
    if config is None:
        level = env.environ.get("DATAHUB_LOG_LEVEL", "").upper()
        setup_logging(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO", stream=env.stderr)
        return
    base = config.source.parent if config.source else None
    setup_logging(config.logging.level, config.logging.format, config.logging.file, base, stream=env.stderr)
    for warning in config.warnings:
        log.warning(warning)


def _stop_on_signals(stop: threading.Event, env: Environment) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning("received %s: stopping at a safe point (partial download kept)", signal.Signals(signum).name)
        stop.set()
    if env.handle_signals and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cmd_sync(args: argparse.Namespace, env: Environment) -> int:
    from app.core.memory import single_malloc_arena
    from app.sync.report import exit_code, log_summary
    from app.sync.run import SyncRun
    single_malloc_arena()
    config = _config(args, env)
    _setup_logs(env, config)
    stop = threading.Event()
    _stop_on_signals(stop, env)
    try:
        results = SyncRun(config, stop=stop, force=args.force, dry_run=args.dry_run).execute(args.names or None)
    except LockedError as exc:
        if not args.skip_if_locked:
            raise
        log.info("nothing to do: %s (--skip-if-locked)", exc)
        return ExitCode.OK
    log_summary(results)
    if stop.is_set():
        return ExitCode.TERMINATED
    return exit_code(results)


def cmd_cron(args: argparse.Namespace, env: Environment) -> int:
    from app.crontab.daemon import crontab_source, load_crontab, run_daemon
    from app.observe.metrics import split_listen
    if args.listen is not None:
        split_listen(args.listen.strip(), key="--listen")      # a bad address is a usage error (exit 2)
    config = _config(args, env)
    _setup_logs(env, config)
    text, source = crontab_source(args.crontab, env.environ, config)
    crontab = load_crontab(text, source)
    if args.test:
        env.stdout.write("crontab is valid\n")
        return ExitCode.OK
    return run_daemon(config, crontab, config_path=args.config, run_on_start=args.run_on_start,
                      listen=args.listen.strip() if args.listen else None)


def cmd_check(args: argparse.Namespace, env: Environment) -> int:
    from app.commands.check import run_check
    from app.crontab.daemon import crontab_source
    config = _config(args, env)
    _setup_logs(env, config)
    try:
        text, source = crontab_source(None, env.environ, config)
    except ConfigError as exc:          # reported as a failed check, not as a config error
        return run_check(config, env.stdout, None, "", env.environ, crontab_error=str(exc))
    return run_check(config, env.stdout, text, source, env.environ)


def cmd_status(args: argparse.Namespace, env: Environment) -> int:
    from app.commands.status import print_status
    config = _config(args, env)
    _setup_logs(env, config)
    print_status(config, env.stdout, args.json)
    return ExitCode.OK


def cmd_healthcheck(args: argparse.Namespace, env: Environment) -> int:
    from app.observe.health import health_problem
    config = _config(args, env)
    problem = health_problem(config, env.clock())
    env.stdout.write(f"unhealthy: {problem}\n" if problem else "healthy\n")
    return ExitCode.FAILED if problem else ExitCode.OK


def cmd_serve(args: argparse.Namespace, env: Environment) -> int:
    from app.serve.server import make_server
    _setup_logs(env)
    try:
        server = make_server(args.directory, args.host, args.port)
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(f"serve: {exc}") from None
    if env.handle_signals and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    log.info("serving %s: listening on http://%s:%d", os.path.abspath(args.directory), host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return ExitCode.OK


@contextmanager
def _restored_globals() -> Iterator[None]:
    """A command changes the program's logger and the stop signals' handlers: put both back after,
    so main() can be called again in the same process (tests do) and finds what it left."""
    logger = logging.getLogger("datahubsync")
    saved_logging = (list(logger.handlers), logger.level, logger.propagate)
    on_main = threading.current_thread() is threading.main_thread()
    saved_signals: dict[int, Any] = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if on_main else {}
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if handler not in saved_logging[0]:
                logger.removeHandler(handler)
                handler.close()
        logger.handlers[:], logger.level, logger.propagate = saved_logging
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)


COMMANDS: dict[str, Callable[[argparse.Namespace, Environment], int]] = {
    "sync": cmd_sync, "cron": cmd_cron, "check": cmd_check, "status": cmd_status,
    "healthcheck": cmd_healthcheck, "serve": cmd_serve}


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment.of_process()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(env.stderr)
        return ExitCode.USAGE
    with _restored_globals():
        return _run(args, env)


def _run(args: argparse.Namespace, env: Environment) -> int:
    """The command, with every error mapped to its exit code in this one place."""
    try:
        return int(COMMANDS[args.command](args, env))
    except DataHubSyncError as exc:
        from app.core.secrets import redact
        log.debug("error detail", exc_info=True)
        env.stderr.write(f"datahubsync: {redact(str(exc))}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return ExitCode.TERMINATED
    except BrokenPipeError:          # `status | head`: the reader left, nothing to report
        env.stderr.close()
        return ExitCode.OK
    except Exception as exc:         # a bug: one line, the traceback only at DEBUG
        from app.core.secrets import redact
        log.debug("internal error", exc_info=True)
        env.stderr.write(f"datahubsync: internal error: {type(exc).__name__}: {redact(str(exc))} "
                         "(run with DATAHUB_LOG_LEVEL=DEBUG for the traceback)\n")
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
