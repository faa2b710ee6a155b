"""A stand-in Kubernetes API server on 127.0.0.1, just enough for `helm install
--dry-run=server --disable-openapi-validation`: discovery for the kinds the chart renders,
404 for every object helm checks before an install, and the namespaces a test defines, so
that the templates' `lookup` reads them. Every request is logged."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping

from tests.helm.chart import helm_binary


def _resource(name: str, kind: str, namespaced: bool = True) -> dict[str, Any]:
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


_DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        _resource("namespaces", "Namespace", namespaced=False), _resource("configmaps", "ConfigMap"),
        _resource("secrets", "Secret"), _resource("pods", "Pod"), _resource("serviceaccounts", "ServiceAccount"),
        _resource("persistentvolumeclaims", "PersistentVolumeClaim")]},
    "/apis/batch/v1": {"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [
        _resource("cronjobs", "CronJob"), _resource("jobs", "Job")]},
}
_NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


class FakeAPIServer:
    """Usage: ``with FakeAPIServer({"research": {"pod-security.kubernetes.io/enforce": "restricted"}}) as api:
    api.helm("install", ...)``; `namespaces` maps each namespace to its labels."""

    def __init__(self, namespaces: Mapping[str, Mapping[str, str]], workdir: Path) -> None:
        self.namespaces = {name: dict(labels) for name, labels in namespaces.items()}
        self.requests: list[str] = []
        self.workdir = workdir
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                api.requests.append(f"{self.command} {path}")
                body = _DISCOVERY.get(path)
                if body is None and path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
                    name = path.rsplit("/", 1)[1]
                    if name in api.namespaces:
                        body = {"kind": "Namespace", "apiVersion": "v1",
                                "metadata": {"name": name, "labels": api.namespaces[name]}}
                status = 200 if body is not None else 404
                data = json.dumps(body if body is not None else _NOT_FOUND).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

        return Handler

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """helm against this server, with its own kubeconfig and helm homes under workdir."""
        kubeconfig = self.workdir / "kubeconfig"
        host, port = self._server.server_address[:2]
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CONFIG_HOME": str(self.workdir / "config"),
               "HELM_CACHE_HOME": str(self.workdir / "cache"), "HELM_DATA_HOME": str(self.workdir / "data")}
        return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=env)

    def __enter__(self) -> "FakeAPIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
