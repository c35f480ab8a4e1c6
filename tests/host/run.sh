#!/usr/bin/env bash
# Real-host tests: baton's .deb on booted Debian bookworm hosts.
#
# Boots five systemd-nspawn containers (h1..h3 voters, h4 a client host that
# reboots, h5 for a broken config) from a cached debootstrap rootfs, each in
# its own network namespace on a private bridge (10.213.0.0/24, exists only
# on this machine), installs the .deb with dpkg inside each, and checks baton
# on real systemd, journald and logind. See tests/host/README.md.
#
# Usage (as root, on Debian 12):
#   tests/host/run.sh                 # builds the .deb with packaging/build.sh first
#   tests/host/run.sh --deb dist/baton_0.1.0-1_amd64.deb
#   tests/host/run.sh --help
# Exit status: 0 all checks passed, 1 a check failed, 2 could not run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $(id -u) != 0 ]]; then
    echo "tests/host/run.sh: must run as root (it creates network namespaces, bridges and containers)" >&2
    exit 2
fi

# Tools the harness runs, and the Debian packages that have them.
declare -A package_of=(
    [systemd-nspawn]=systemd-container
    [debootstrap]=debootstrap
    [ip]=iproute2
    [nsenter]=util-linux
    [python3]=python3
    [dpkg-deb]=dpkg
)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
if ((${#missing[@]})); then
    echo "== apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The system's Python 3 (stdlib only), not a pyenv shim or a virtualenv.
python=/usr/bin/python3
[[ -x $python ]] || python=$(command -v python3)
exec "$python" -u "$here/harness.py" "$@"
