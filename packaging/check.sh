#!/usr/bin/env bash
# Runs every validator on baton's packaging and exits non-zero if one fails:
#   - lintian on dist/baton_<version>-1_amd64.deb (errors and warnings fail;
#     overrides live in packaging/deb/lintian-overrides), plus its contents
#     and maintainer scripts;
#   - systemd-analyze verify on the unit as the .deb installs it and as the
#     sysext ships it (with the Upholds= drop-in); any message fails;
#   - systemd-analyze security --offline on systemd/baton.service, failing
#     above an exposure of 2.0 (BATON_MAX_EXPOSURE, in tenths);
#   - the sysext image's files and extension-release;
#   - ignition-validate on packaging/flatcar/baton.ign and
#     packaging/flatcar/check.py (baton.bu and baton.ign in step);
#   - cloud-init schema and packaging/cloud-init/check.py on user-data.yaml;
#   - TOML syntax of the default configuration.
#
# Usage: packaging/check.sh [--install-tools]
#   Run packaging/build.sh first. --install-tools apt-get installs missing
#   validators (lintian ignition cloud-init squashfs-tools python3-yaml).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
max_exposure=${BATON_MAX_EXPOSURE:-20}

if [[ "${1:-}" == "--install-tools" ]]; then
    missing=()
    command -v lintian >/dev/null || missing+=(lintian)
    command -v ignition-validate >/dev/null || missing+=(ignition)
    command -v cloud-init >/dev/null || missing+=(cloud-init)
    command -v unsquashfs >/dev/null || missing+=(squashfs-tools)
    python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
    if ((${#missing[@]})); then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
            { echo "check.sh: cannot install ${missing[*]}" >&2; exit 1; }
    fi
elif [[ $# -gt 0 ]]; then
    echo "usage: packaging/check.sh [--install-tools]" >&2
    exit 2
fi

version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')
deb="dist/baton_${version}-1_amd64.deb"
raw="dist/baton-${version}-x86-64.raw"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
# check NAME COMMAND...: runs COMMAND, prints its output indented, counts.
check() {
    local name=$1
    shift
    local output rc
    output=$("$@" 2>&1)
    rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s (exit %d)\n' "$name" "$rc"
    fi
    [[ -n "$output" ]] && printf '%s\n' "$output" | sed 's/^/      /'
    return 0
}
# quiet COMMAND...: fails if COMMAND fails or prints anything.
quiet() {
    local output
    output=$("$@" 2>&1) || { printf '%s\n' "$output"; return 1; }
    [[ -z "$output" ]] || { printf '%s\n' "$output"; return 1; }
}
need() {
    command -v "$1" >/dev/null || { echo "$1 not found: apt-get install $2 (or run check.sh --install-tools)"; return 1; }
}
have_artifacts() {
    [[ -s "$deb" && -s "$raw" ]] || { echo "$deb or $raw missing: run packaging/build.sh first"; return 1; }
}

# --- sources -------------------------------------------------------------
check "default configuration is valid TOML" \
    python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' packaging/deb/baton.toml

security() {
    need systemd-analyze systemd || return 1
    systemd-analyze security --offline=yes --threshold="$max_exposure" --no-pager systemd/baton.service |
        grep -E '^(✗|→)'
    local rc=${PIPESTATUS[0]}
    ((rc == 0)) || echo "exposure above ${max_exposure} (tenths): loosen nothing without a reason in the unit"
    return "$rc"
}
check "systemd-analyze security systemd/baton.service (max $max_exposure/100)" security

check "ignition-validate packaging/flatcar/baton.ign" \
    bash -c 'command -v ignition-validate >/dev/null || { echo "ignition-validate not found: apt-get install ignition"; exit 1; }; ignition-validate packaging/flatcar/baton.ign'
check "packaging/flatcar/check.py (baton.bu and baton.ign in step)" python3 packaging/flatcar/check.py
check "cloud-init schema packaging/cloud-init/user-data.yaml" \
    bash -c 'command -v cloud-init >/dev/null || { echo "cloud-init not found: apt-get install cloud-init"; exit 1; }; cloud-init schema --config-file packaging/cloud-init/user-data.yaml'
check "packaging/cloud-init/check.py" python3 packaging/cloud-init/check.py
check "packaging/kubernetes/check.py (the drain's least privilege)" python3 packaging/kubernetes/check.py

# --- the .deb --------------------------------------------------------------
lint() {
    have_artifacts && need lintian lintian || return 1
    # Root is fine here (lintian only unpacks); its note about it is noise.
    lintian --fail-on error,warning --info --display-experimental "$deb" 2>&1 |
        grep -v '^running with root privileges is not recommended!$'
    return "${PIPESTATUS[0]}"
}
check "lintian $deb" lint

deb_contents() {
    have_artifacts || return 1
    local files control="$work/control" problems=0
    files=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|')
    for path in /usr/bin/baton /usr/lib/systemd/system/baton.service /etc/baton/baton.toml \
        /usr/share/man/man1/baton.1.gz /usr/share/man/man1/baton-agent.1.gz \
        /usr/share/bash-completion/completions/baton /usr/share/zsh/vendor-completions/_baton \
        /usr/share/fish/vendor_completions.d/baton.fish /usr/share/doc/baton/copyright \
        /usr/share/doc/baton/changelog.Debian.gz; do
        grep -qxF "$path" <<<"$files" || { echo "missing $path"; problems=1; }
    done
    dpkg-deb -e "$deb" "$control"
    grep -qxF /etc/baton/baton.toml "$control/conffiles" || { echo "/etc/baton/baton.toml is not a conffile"; problems=1; }
    grep -q 'deb-systemd-helper enable baton.service' "$control/postinst" || { echo "postinst does not enable baton.service"; problems=1; }
    grep -q 'deb-systemd-invoke \$_dh_action baton.service' "$control/postinst" || { echo "postinst does not start baton.service"; problems=1; }
    grep -q 'deb-systemd-invoke stop baton.service' "$control/prerm" || { echo "prerm does not stop baton.service"; problems=1; }
    grep -q 'rm -rf /var/lib/baton' "$control/postrm" || { echo "postrm does not remove /var/lib/baton on purge"; problems=1; }
    for script in postinst prerm postrm; do
        sh -n "$control/$script" || { echo "$script: shell syntax error"; problems=1; }
    done
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/baton.service | cmp -s - systemd/baton.service ||
        { echo "the packaged unit differs from systemd/baton.service: rebuild"; problems=1; }
    return "$problems"
}
check "$deb: files, conffiles, maintainer scripts" deb_contents

# A root with this host's systemd units and the package's files, so that
# verify finds sysinit.target etc., /usr/bin/baton and the man page.
verify_root() {
    local tree=$1
    shift
    need systemd-analyze systemd || return 1
    mkdir -p "$tree/usr/lib/systemd" "$tree/etc/systemd/system"
    cp -a /usr/lib/systemd/system "$tree/usr/lib/systemd/"
    "$@" # fills $tree
}
verify_deb() {
    have_artifacts || return 1
    local tree="$work/deb-root"
    verify_root "$tree" dpkg-deb -x "$deb" "$tree" || return 1
    MANPATH="$tree/usr/share/man" quiet systemd-analyze verify --root="$tree" baton.service
}
check "systemd-analyze verify baton.service (as installed by $deb)" verify_deb

sysext() {
    have_artifacts && need unsquashfs squashfs-tools || return 1
    local tree="$work/sysext" problems=0
    unsquashfs -q -n -d "$tree" "$raw" >/dev/null || return 1
    for path in usr/bin/baton usr/lib/systemd/system/baton.service \
        usr/lib/systemd/system/multi-user.target.d/10-baton.conf \
        usr/lib/extension-release.d/extension-release.baton; do
        [[ -f "$tree/$path" ]] || { echo "missing /$path"; problems=1; }
    done
    [[ -x "$tree/usr/bin/baton" ]] || { echo "/usr/bin/baton is not executable"; problems=1; }
    local extra
    extra=$(cd "$tree" && find . -mindepth 1 -maxdepth 1 ! -name usr)
    [[ -z "$extra" ]] || { echo "a sysext may only contain /usr (and /opt): found $extra"; problems=1; }
    cmp -s "$tree/usr/lib/extension-release.d/extension-release.baton" packaging/sysext/extension-release.baton ||
        { echo "extension-release.baton differs from packaging/sysext/extension-release.baton"; problems=1; }
    for key in ID=flatcar SYSEXT_LEVEL=1.0 ARCHITECTURE=x86-64; do
        grep -qxF "$key" "$tree/usr/lib/extension-release.d/extension-release.baton" || { echo "extension-release lacks $key"; problems=1; }
    done
    grep -qxF 'Upholds=baton.service' "$tree/usr/lib/systemd/system/multi-user.target.d/10-baton.conf" ||
        { echo "the multi-user.target drop-in does not uphold baton.service"; problems=1; }
    cmp -s "$tree/usr/lib/systemd/system/baton.service" systemd/baton.service ||
        { echo "the sysext's unit differs from systemd/baton.service: rebuild"; problems=1; }
    return "$problems"
}
check "$raw: files and extension-release" sysext

verify_sysext() {
    have_artifacts && need unsquashfs squashfs-tools || return 1
    local tree="$work/sysext-root"
    verify_root "$tree" unsquashfs -q -n -f -d "$tree" "$raw" >/dev/null || return 1
    quiet systemd-analyze verify --man=no --root="$tree" baton.service multi-user.target
}
check "systemd-analyze verify baton.service multi-user.target (as merged from $raw)" verify_sysext

echo "$passed passed, $failed failed"
((failed == 0))
