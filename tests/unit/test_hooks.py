"""Hooks with real processes: the `hooks:` config, environment, output to the log, timeouts that
kill the whole process group, verify, and a post_sync run that is re-run after its sync was killed."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ConfigError
from app.sync.hooks import (
    DEFAULT_TIMEOUT,
    HookOutcome,
    HooksConfig,
    marker_path,
    parse_hooks,
    pending_hooks,
    resume_hooks,
    run_hook,
    run_post_sync,
    run_verify,
)
from tests.helpers import REPO_ROOT

PY = sys.executable
V1, V2 = "2025-11-27T07:00:00Z", "2025-11-28T07:00:00Z"
# A hook that writes the DATAHUB_* part of its environment to the file named by its first argument.
DUMP_ENV = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() if k.startswith('DATAHUB_')}, "
            "open(sys.argv[1], 'w'))")


class Records(logging.Handler):
    """A private logger for one test, and every record it receives."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def stream(self, name: str) -> list[str]:
        return [r.getMessage() for r in list(self.records) if getattr(r, "stream", None) == name]

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in list(self.records) if r.levelno >= level]


@pytest.fixture
def records(request: pytest.FixtureRequest) -> Iterator[Records]:
    handler = Records(f"test_hooks.{request.node.name}")
    yield handler
    handler.logger.removeHandler(handler)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# ---- configuration -------------------------------------------------------------------------------

def test_yaml_hooks() -> None:
    raw = yaml.safe_load(textwrap.dedent("""
        hooks:
          post_sync: [/hooks/reload, --dataset, 5]
          verify: ["python3", "/hooks/check.py"]
          timeout: 30
        """))["hooks"]
    assert parse_hooks(raw) == HooksConfig(("/hooks/reload", "--dataset", "5"), ("python3", "/hooks/check.py"), 30.0)
    assert parse_hooks(None) == parse_hooks({}) == HooksConfig(None, None, DEFAULT_TIMEOUT)
    assert parse_hooks({"timeout": "2.5"}).timeout == 2.5


@pytest.mark.parametrize("raw, message", [
    ({"post_sync": "/hooks/reload --quiet"},
     "hooks.post_sync: expected an argv list, not a shell string "
     "(e.g. [\"/hooks/reload\", \"--quiet\"]; for shell syntax [\"sh\", \"-c\", \"...\"])"),
    ({"verify": []}, "hooks.verify: expected an argv list, got an empty list"),
    ({"verify": {"cmd": "x"}}, "hooks.verify: expected an argv list of strings, got dict"),
    ({"post_sync": ["x", True]}, "hooks.post_sync[1]: expected a string, got bool True"),
    ({"post_sync": ["x", None]}, "hooks.post_sync[1]: expected a string, got null None"),
    ({"post_sync": ["x", "a\0b"]}, "hooks.post_sync[1]: contains a NUL character"),
    ({"post_sync": [" ", "a"]}, "hooks.post_sync[0]: the program name is empty"),
    ({"pre_sync": ["x"]}, "hooks.pre_sync: unknown key (known: post_sync, verify, timeout)"),
    (["x"], "hooks: expected a mapping (post_sync, verify, timeout), got list"),
    ({"timeout": 0}, "hooks.timeout: expected a positive number of seconds, got 0"),
    ({"timeout": -1.5}, "hooks.timeout: expected a positive number of seconds, got -1.5"),
    ({"timeout": float("inf")}, "hooks.timeout: expected a positive number of seconds, got inf"),
    ({"timeout": "nan"}, "hooks.timeout: expected a positive number of seconds, got 'nan'"),
    ({"timeout": "soon"}, "hooks.timeout: expected a number of seconds, got 'soon'"),
    ({"timeout": True}, "hooks.timeout: expected a number of seconds, got bool True"),
])
def test_bad_hooks_name_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hooks(raw)
    assert str(caught.value) == message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["post_sync", "verify", "timeout", "other"]), inner, max_size=4),
    max_leaves=10)


@given(json_values)
def test_any_value_is_a_hooks_config_or_a_config_error(raw: Any) -> None:
    try:
        hooks = parse_hooks(raw)
    except ConfigError as exc:
        assert str(exc).startswith("hooks") and "\n" not in str(exc)
        return
    assert hooks.timeout > 0
    for argv in (hooks.post_sync, hooks.verify):
        assert argv is None or (argv and all(isinstance(a, str) and "\0" not in a for a in argv))


# ---- running a hook ------------------------------------------------------------------------------

def test_environment_and_output_reach_the_hook_and_the_log(tmp_path: Path, records: Records) -> None:
    out = tmp_path / "env.json"
    script = DUMP_ENV + "; print('line one'); print('line two', flush=True); print('oops', file=sys.stderr)"
    os.environ["DATAHUB_FROM_PARENT"] = "kept"
    try:
        outcome = run_hook([PY, "-c", script, str(out)], {"DATAHUB_DATASET": "prices", "DATAHUB_DIR": "/data/x"},
                           5, records.logger, name="post_sync", dataset="prices")
    finally:
        del os.environ["DATAHUB_FROM_PARENT"]
    assert outcome == HookOutcome(True, exit_code=0)
    assert json.loads(out.read_text()) == {"DATAHUB_DATASET": "prices", "DATAHUB_DIR": "/data/x",
                                           "DATAHUB_FROM_PARENT": "kept"}
    assert records.stream("stdout") == ["post_sync hook stdout: line one", "post_sync hook stdout: line two"]
    assert records.stream("stderr") == ["post_sync hook stderr: oops"]
    assert all(getattr(r, "dataset", None) == "prices" for r in records.records)


def test_a_non_zero_exit_is_an_outcome(records: Records) -> None:
    outcome = run_hook([PY, "-c", "raise SystemExit(3)"], {}, 5, records.logger)
    assert outcome == HookOutcome(False, exit_code=3, error="exit status 3")
    assert "hook failed: exit status 3" in records.messages(logging.ERROR)


def test_a_hook_killed_by_a_signal(records: Records) -> None:
    outcome = run_hook([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], {}, 5, records.logger)
    assert outcome == HookOutcome(False, exit_code=137, error="killed by SIGKILL")


@pytest.mark.parametrize("argv, reason", [
    (["/nonexistent/hook-program"], "No such file or directory"),
    ([os.devnull], "Permission denied"),
])
def test_a_program_that_cannot_start_is_an_outcome(argv: list[str], reason: str, records: Records) -> None:
    outcome = run_hook(argv, {}, 5, records.logger)
    assert outcome == HookOutcome(False, error=f"cannot start {argv[0]!r}: {reason}")
    assert records.messages(logging.ERROR) == [f"hook failed: cannot start {argv[0]!r}: {reason}"]


def test_timeout_kills_the_whole_process_group(tmp_path: Path, records: Records) -> None:
    child_pid = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)']); "
              f"open({str(child_pid)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    started = time.monotonic()
    outcome = run_hook([PY, "-c", script], {}, 1.0, records.logger, grace=1.0)
    elapsed = time.monotonic() - started
    assert outcome.timed_out and not outcome.ok and not outcome.interrupted
    assert outcome.error == "timed out after 1 s" and outcome.exit_code == 128 + signal.SIGTERM
    assert 1.0 <= elapsed < 4.0
    assert records.stream("stdout") == ["hook stdout: started"]
    grandchild = int(child_pid.read_text())
    wait_for(lambda: not alive(grandchild), 3)


def test_a_hook_that_ignores_sigterm_gets_sigkill(records: Records) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ready', flush=True); time.sleep(60)")
    started = time.monotonic()
    outcome = run_hook([PY, "-c", script], {}, 0.5, records.logger, grace=0.5)
    assert time.monotonic() - started < 3.0
    assert outcome.timed_out and outcome.exit_code == 128 + signal.SIGKILL
    assert any("sending SIGKILL" in m for m in records.messages(logging.WARNING))


def test_stop_interrupts_the_hook(records: Records) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    outcome = run_hook([PY, "-c", "import time; time.sleep(60)"], {}, 30, records.logger, stop, grace=1.0)
    timer.join()
    assert outcome.interrupted and not outcome.timed_out and not outcome.ok
    assert outcome.error == "stopped before it finished"


def test_a_background_child_holding_the_output_does_not_hold_up_the_hook(records: Records) -> None:
    script = (f"import subprocess; subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(6)']); "
              "print('detached a child')")
    started = time.monotonic()
    outcome = run_hook([PY, "-c", script], {}, 30, records.logger)
    assert outcome.ok and time.monotonic() - started < 4.5


# ---- verify ----------------------------------------------------------------------------------------

def test_verify_sees_the_staged_tree(tmp_path: Path, records: Records) -> None:
    staged = tmp_path / "staging" / "prices"
    staged.mkdir(parents=True)
    (staged / "ok.csv").write_text("a,b\n")
    check = ("import os, sys; d = os.environ['DATAHUB_DIR']; print(os.environ['DATAHUB_STATUS'], "
             "os.environ['DATAHUB_VERSION'], os.environ['DATAHUB_PREVIOUS_VERSION']); "
             "sys.exit(0 if os.path.exists(os.path.join(d, 'ok.csv')) else 4)")
    hooks = HooksConfig(verify=(PY, "-c", check), timeout=5)
    assert run_verify(hooks, staged, "prices", V2, V1, records.logger) == HookOutcome(True, exit_code=0)
    assert records.stream("stdout") == [f"verify hook stdout: staged {V2} {V1}"]
    (staged / "ok.csv").unlink()
    assert run_verify(hooks, staged, "prices", V2, None, records.logger) == \
        HookOutcome(False, exit_code=4, error="exit status 4")
    assert run_verify(HooksConfig(), staged, "prices", V2, V1, records.logger) is None


# ---- post_sync and its pending marker -------------------------------------------------------------

def test_post_sync_environment_and_marker_while_it_runs(tmp_path: Path, records: Records) -> None:
    state = tmp_path / "state"
    out = tmp_path / "env.json"
    marker = marker_path(state, "prices")
    script = DUMP_ENV + f"; print('marker present' if os.path.exists({str(marker)!r}) else 'no marker')"
    hooks = HooksConfig(post_sync=(PY, "-c", script, str(out)), timeout=5)
    outcome = run_post_sync(hooks, state, "prices", tmp_path / "data" / "prices", V2, V1, records.logger)
    assert outcome == HookOutcome(True, exit_code=0)
    assert json.loads(out.read_text()) == {
        "DATAHUB_DATASET": "prices", "DATAHUB_DIR": str(tmp_path / "data" / "prices"),
        "DATAHUB_VERSION": V2, "DATAHUB_PREVIOUS_VERSION": V1, "DATAHUB_STATUS": "success"}
    assert records.stream("stdout") == ["post_sync hook stdout: marker present"]
    assert not marker.exists() and pending_hooks(state) == []
    assert run_post_sync(HooksConfig(), state, "prices", tmp_path, V2, V1, records.logger) is None


def test_a_finished_hook_leaves_no_marker_even_when_it_failed(tmp_path: Path, records: Records) -> None:
    hooks = HooksConfig(post_sync=(PY, "-c", "raise SystemExit(2)"), timeout=5)
    outcome = run_post_sync(hooks, tmp_path, "prices", tmp_path / "prices", V2, None, records.logger)
    assert outcome is not None and outcome.exit_code == 2
    timed = HooksConfig(post_sync=(PY, "-c", "import time; time.sleep(30)"), timeout=0.5)
    outcome = run_post_sync(timed, tmp_path, "prices", tmp_path / "prices", V2, None, records.logger)
    assert outcome is not None and outcome.timed_out
    assert pending_hooks(tmp_path) == []


def test_an_interrupted_hook_stays_pending_and_resumes(tmp_path: Path, records: Records) -> None:
    out = tmp_path / "env.json"
    script = "import os, sys, time; time.sleep(float(os.environ.get('HOOK_SLEEP', '0'))); " + DUMP_ENV
    hooks = HooksConfig(post_sync=(PY, "-c", script, str(out)), timeout=30)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    os.environ["HOOK_SLEEP"] = "30"
    try:
        outcome = run_post_sync(hooks, tmp_path, "prices", tmp_path / "prices", V2, V1, records.logger, stop)
    finally:
        del os.environ["HOOK_SLEEP"]
    timer.join()
    assert outcome is not None and outcome.interrupted and not out.exists()
    (pending,) = pending_hooks(tmp_path)
    assert (pending.dataset, pending.version, pending.previous_version, pending.status) == ("prices", V2, V1, "success")
    (done,) = resume_hooks(hooks, tmp_path, records.logger)
    assert done == (pending, HookOutcome(True, exit_code=0))
    assert json.loads(out.read_text())["DATAHUB_VERSION"] == V2
    assert pending_hooks(tmp_path) == []


# The hook notes its pid, sleeps HOOK_SLEEP seconds, then writes its DATAHUB_* environment.
SLOW_HOOK = ("import os, sys, time; open(sys.argv[1] + '.pid', 'w').write(str(os.getpid())); "
             "time.sleep(float(os.environ.get('HOOK_SLEEP', '0'))); " + DUMP_ENV)
# A sync in miniature: runs the post_sync hook through the API, to be killed while it waits.
RUNNER = textwrap.dedent("""\
    import logging, sys
    from pathlib import Path
    from app.sync.hooks import HooksConfig, run_post_sync
    logging.basicConfig(level=logging.INFO)
    state, data, out, hook = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    hooks = HooksConfig(post_sync=(sys.executable, "-c", hook, out), timeout=60)
    run_post_sync(hooks, state, "prices", data, "2025-11-28T07:00:00Z", "2025-11-27T07:00:00Z",
                  logging.getLogger("runner"))
    """)


def test_a_hook_whose_sync_was_killed_runs_again_at_the_next_start(tmp_path: Path, records: Records) -> None:
    state, data, out = tmp_path / "state", tmp_path / "data" / "prices", tmp_path / "env.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOOK_SLEEP": "30"}
    runner = subprocess.Popen([PY, "-c", RUNNER, str(state), str(data), str(out), SLOW_HOOK], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_pid_file = Path(f"{out}.pid")
    try:
        wait_for(first_pid_file.exists)
        wait_for(lambda: (pending := pending_hooks(state)) and pending[0].pid is not None)
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.kill()
        runner.wait()
    first_hook = int(first_pid_file.read_text())
    assert alive(first_hook)           # the killed sync's hook runs on, on its own
    (pending,) = pending_hooks(state)
    assert pending.pid == first_hook and not out.exists()

    hooks = HooksConfig(post_sync=(PY, "-c", SLOW_HOOK, str(out)), timeout=10)   # no HOOK_SLEEP here
    (done,) = resume_hooks(hooks, state, records.logger)
    assert done[1] == HookOutcome(True, exit_code=0)
    assert not alive(first_hook)       # stopped before the re-run, so the two never overlap
    assert json.loads(out.read_text()) == {
        "DATAHUB_DATASET": "prices", "DATAHUB_DIR": str(data), "DATAHUB_VERSION": V2,
        "DATAHUB_PREVIOUS_VERSION": V1, "DATAHUB_STATUS": "success"}
    assert pending_hooks(state) == []
    assert any("still running on its own" in m for m in records.messages(logging.WARNING))


def test_resume_drops_what_it_cannot_use(tmp_path: Path, records: Records) -> None:
    folder = tmp_path / "hooks"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    (folder / "partial.json").write_text(json.dumps({"dataset": "x"}))
    (folder / ".prices.json.123.tmp").write_text("left by an interrupted write")
    hooks = HooksConfig(post_sync=(PY, "-c", "pass"), timeout=5)
    assert pending_hooks(tmp_path) == []
    assert resume_hooks(hooks, tmp_path, records.logger) == []
    assert sorted(p.name for p in folder.iterdir()) == [".prices.json.123.tmp"]
    # a pending run whose hook is no longer configured is dropped, not run
    interrupted = threading.Event()
    interrupted.set()
    run_post_sync(HooksConfig(post_sync=(PY, "-c", "import time; time.sleep(30)"), timeout=5), tmp_path, "prices",
                  tmp_path / "prices", V2, V1, records.logger, interrupted)
    assert len(pending_hooks(tmp_path)) == 1
    assert resume_hooks(HooksConfig(), tmp_path, records.logger) == []
    assert pending_hooks(tmp_path) == []
    assert any("none is configured now" in m for m in records.messages(logging.WARNING))


@given(st.text(min_size=1, max_size=60))
def test_marker_path_stays_in_the_hooks_folder(name: str) -> None:
    path = marker_path(Path("/state"), name)
    assert path.parent == Path("/state/hooks") and path.name.endswith(".json") and "/" not in path.name


@pytest.mark.parametrize("value", [10 ** 400, pytest.param(10 ** 5000, id="5000-digits"), "1e999", 315_360_001, -1, 0])
def test_a_timeout_out_of_range_is_a_config_error(value: object) -> None:
    from app.core.errors import ConfigError
    from app.sync.hooks import parse_hooks
    with pytest.raises(ConfigError, match="hooks.timeout"):
        parse_hooks({"timeout": value})
