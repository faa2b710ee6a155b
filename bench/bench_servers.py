"""The servers the contenders download from: nginx with a throwaway config, and the product's `serve`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Request:
    method: str
    uri: str
    status: int
    bytes_sent: int
    range: str


_NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format bench '$request_method $request_uri $status $bytes_sent "$http_range"';
    access_log {tmp}/access.log bench;
{temp_paths}
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    default_type application/octet-stream;
    types {{ application/zip zip; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /api/datasets {{ default_type application/json; }}
        location /package/ {{ {limit} }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground on 127.0.0.1 serving a static hub; optional per-connection rate limit."""

    def __init__(self, root: Path, *, limit_rate: str | None = None) -> None:
        self.root = root
        self.limit_rate = limit_rate
        self.port = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self._tmp / "access.log"

    def _config(self) -> str:
        built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
        temp_paths = "\n".join(
            f"    {module}_temp_path {self._tmp}/{module};"
            for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            if module == "client_body" or f"--without-http_{module}_module" not in built
        )
        return _NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",  # workers would run as nobody and lose the root dir
            tmp=self._tmp, temp_paths=temp_paths, port=self.port, root=self.root,
            limit=f"limit_rate {self.limit_rate};" if self.limit_rate else "",
        )

    def start(self) -> "Nginx":
        self.port = free_port()
        conf = self._tmp / "nginx.conf"
        conf.write_text(self._config())
        log = self._tmp / "stderr.log"
        with open(log, "wb") as output:
            self._proc = subprocess.Popen(
                ["nginx", "-p", str(self._tmp), "-e", str(self._tmp / "error.log"), "-c", str(conf)],
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for_port(self.port, self._proc, log)
        return self

    def mark(self) -> int:
        """Position in the access log; requests() after it are the ones of one run."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests(self, mark: int, settle: float = 0.3) -> list[Request]:
        # nginx logs a request when it ends; a killed client's request ends when nginx
        # next writes to the dead socket, a moment after the client is gone.
        time.sleep(settle)
        if not self.access_log.exists():
            return []
        with open(self.access_log, "rb") as stream:
            stream.seek(mark)
            lines = stream.read().decode("utf-8", "replace").splitlines()
        found = []
        for line in lines:
            parts = re.match(r'(\S+) (\S+) (\d+) (\d+) "(.*)"$', line)
            if parts:
                found.append(Request(parts[1], parts[2], int(parts[3]), int(parts[4]), parts[5]))
        return found

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)  # graceful: lets workers finish their log lines
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProductServe:
    """`python entrypoint.py serve DIR --port 0`, started from the repository root."""

    def __init__(self, repo: Path, directory: Path, env: dict[str, str]) -> None:
        self.repo = repo
        self.directory = directory
        self.env = env
        self.port = 0
        self._log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "serve.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ProductServe":
        with open(self._log, "wb") as output:
            self._proc = subprocess.Popen(
                [sys.executable, "entrypoint.py", "serve", str(self.directory), "--host", "127.0.0.1", "--port", "0"],
                cwd=self.repo, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"listening on http://[^\s:]+:(\d+)", self._log.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                wait_for_port(self.port, self._proc, self._log)
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        text = self._log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"serve did not start: {text}")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        shutil.rmtree(self._log.parent, ignore_errors=True)

    def __enter__(self) -> "ProductServe":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
