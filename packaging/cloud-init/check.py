#!/usr/bin/env python3
"""Checks what `cloud-init schema` does not: that user-data.yaml does baton's job.

cloud-init's schema accepts unknown top-level keys (a misspelt `write_file:`
passes), so this checks the content: the baton drop-in is valid TOML and
lists voters, the host's TLS files are written (the key 0600),
unattended-upgrades' Automatic-Reboot is set to "false", the
.deb of the workspace's version is installed, and baton.service is enabled.

Usage: check.py            Exit status: 0 fine, 1 a problem (printed), 2 unreadable.
"""

import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
USER_DATA = HERE / "user-data.yaml"
WORKSPACE = HERE.parent.parent / "Cargo.toml"
DROP_IN = "/etc/baton/baton.d/50-cloud-init.toml"
NO_REBOOT = "/etc/apt/apt.conf.d/99baton-no-automatic-reboot"
# The host's TLS identity at the default [tls] paths, and their modes.
TLS_FILES = {
    "/etc/baton/tls/ca.crt": "0644",
    "/etc/baton/tls/host.crt": "0644",
    "/etc/baton/tls/host.key": "0600",
}


def problems(data: dict, version: str):
    text = USER_DATA.read_text()
    if not text.startswith("#cloud-config\n"):
        yield "the first line must be #cloud-config"
    files = {f.get("path"): f for f in data.get("write_files") or []}
    drop_in = files.get(DROP_IN)
    if drop_in is None:
        yield f"write_files has no {DROP_IN}"
    else:
        try:
            config = tomllib.loads(drop_in.get("content", ""))
        except tomllib.TOMLDecodeError as e:
            yield f"{DROP_IN} is not valid TOML: {e}"
        else:
            if not config.get("cluster", {}).get("voters"):
                yield f"{DROP_IN} lists no [cluster] voters"
    for path, mode in TLS_FILES.items():
        entry = files.get(path)
        if entry is None:
            yield f"write_files has no {path} (the host's TLS identity)"
        elif str(entry.get("permissions")) != mode:
            yield f"{path} is written with permissions {entry.get('permissions')}, expected {mode}"
    no_reboot = files.get(NO_REBOOT)
    if no_reboot is None:
        yield f"write_files has no {NO_REBOOT}"
    elif 'Unattended-Upgrade::Automatic-Reboot "false";' not in no_reboot.get("content", ""):
        yield f'{NO_REBOOT} does not set Unattended-Upgrade::Automatic-Reboot "false"'
    commands = [c if isinstance(c, str) else " ".join(c) for c in data.get("runcmd") or []]
    deb = f"baton_{version}-1_amd64.deb"
    if not any(deb in c and "apt-get install" in c for c in commands):
        yield f"runcmd does not install {deb} (the workspace version is {version})"
    if "systemctl enable --now baton.service" not in commands:
        yield "runcmd does not run: systemctl enable --now baton.service"
    if "unattended-upgrades" not in (data.get("packages") or []):
        yield "packages does not install unattended-upgrades"


def main():
    try:
        import yaml

        data = yaml.safe_load(USER_DATA.read_text())
        version = tomllib.loads(WORKSPACE.read_text())["workspace"]["package"]["version"]
    except (ImportError, OSError, KeyError, tomllib.TOMLDecodeError) as e:
        print(f"check.py: {e}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"check.py: {USER_DATA.name}: {e}", file=sys.stderr)
        return 2
    found = list(problems(data, version))
    for problem in found:
        print(f"check.py: {USER_DATA.name}: {problem}", file=sys.stderr)
    if not found:
        print(f"check.py: {USER_DATA.name} installs baton {version}, configures it and stops automatic reboots")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
