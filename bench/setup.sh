#!/usr/bin/env bash
# Installs what the benchmark drives: nginx (nginx-light), aria2, curl, unzip,
# ss (iproute2, to see how far a download got) and GNU time (peak RSS).
# Idempotent: does nothing when every tool is already there.
# Debian/Ubuntu, as root (or with sudo).
set -euo pipefail

declare -A package_of=(
    [nginx]=nginx-light
    [aria2c]=aria2
    [curl]=curl
    [unzip]=unzip
    [ss]=iproute2
    [/usr/bin/time]=time
)

missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done

if ((${#missing[@]} == 0)); then
    echo "bench/setup.sh: nginx, aria2c, curl, unzip, ss and GNU time are installed"
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
echo "bench/setup.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The benchmark starts its own nginx on a random port; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $sudo systemctl stop nginx || true
fi
