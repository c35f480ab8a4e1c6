#!/usr/bin/env python3
"""Keeps packaging/flatcar/baton.bu (Butane) and baton.ign (Ignition) in step.

No Butane binary can be installed where baton is built, so baton.ign is
committed. This script translates the subset of Butane's Flatcar variant that
baton.bu uses (files with inline or remote contents, links, units with mask,
enabled, contents and drop-ins) the way Butane does, and compares the result
with baton.ign *by meaning*: file contents are compared after decoding the
data URLs (and gunzipping), so an Ignition file made by a real
`butane --pretty --strict` passes as well as one written by `--write`.

It also checks what baton needs from the config: the sysext of the
workspace's version under /opt/extensions/baton/, the /etc/extensions/baton.raw
link to it, /etc/baton/baton.toml, the TLS files (key 0600), REBOOT_STRATEGY=off in
/etc/flatcar/update.conf, and locksmithd.service masked.

Usage: check.py [--write]   (--write regenerates baton.ign from baton.bu)
Exit status: 0 in step, 1 not in step (each difference is printed), 2 usage or
unreadable input. Needs PyYAML (Debian: python3-yaml).
"""

import base64
import gzip
import json
import re
import sys
import tomllib
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUTANE = HERE / "baton.bu"
IGNITION = HERE / "baton.ign"
WORKSPACE = HERE.parent.parent / "Cargo.toml"

# Butane Flatcar variant version -> Ignition spec version it produces.
SPEC_OF_VARIANT = {"1.0.0": "3.3.0", "1.1.0": "3.4.0"}

FILE_KEYS = {"path", "mode", "overwrite", "contents", "user", "group"}
CONTENTS_KEYS = {"inline", "source", "verification", "compression", "http_headers"}
LINK_KEYS = {"path", "target", "hard", "overwrite", "user", "group"}
UNIT_KEYS = {"name", "enabled", "mask", "contents", "dropins"}
DROPIN_KEYS = {"name", "contents"}


class Invalid(Exception):
    pass


def only(keys, allowed, where):
    unknown = set(keys) - allowed
    if unknown:
        raise Invalid(
            f"{where}: check.py does not translate {sorted(unknown)}; "
            "teach it (and Butane's rules for it) before using them"
        )


def data_url(contents: bytes):
    """Butane's makeDataURL: the shortest of URL-escaped, base64 and
    base64 of gzip (the last only if it saves more than the 25 characters of
    `"compression": "gzip"`). Returns (source, compression)."""
    opaque = "," + urllib.parse.quote(contents, safe="-_.~")
    b64 = ";base64," + base64.b64encode(contents).decode()
    if len(b64) < len(opaque):
        opaque = b64
    compression = ""
    gz = ";base64," + base64.b64encode(gzip.compress(contents, 9, mtime=0)).decode()
    if len(gz) + 25 < len(opaque):
        opaque, compression = gz, "gzip"
    return "data:" + opaque, compression


def decode_source(source: str, compression: str) -> bytes:
    """The bytes Ignition writes for a `data:` source."""
    match = re.fullmatch(r"data:([^,]*),(.*)", source, re.DOTALL)
    if not match:
        raise Invalid(f"not a data URL: {source[:60]}")
    params, payload = match.groups()
    if params.endswith(";base64"):
        raw = base64.b64decode(payload)
    else:
        raw = urllib.parse.unquote_to_bytes(payload)
    if compression == "gzip":
        raw = gzip.decompress(raw)
    elif compression:
        raise Invalid(f"unknown compression {compression!r}")
    return raw


def translate(bu: dict) -> dict:
    """Butane (the subset baton.bu uses) -> Ignition config, as Butane writes it."""
    only(bu, {"variant", "version", "storage", "systemd"}, "baton.bu")
    if bu.get("variant") != "flatcar":
        raise Invalid(f"baton.bu: variant must be flatcar, not {bu.get('variant')!r}")
    spec = SPEC_OF_VARIANT.get(str(bu.get("version")))
    if spec is None:
        raise Invalid(f"baton.bu: unknown flatcar version {bu.get('version')!r}")
    ign = {"ignition": {"version": spec}}

    storage = bu.get("storage") or {}
    only(storage, {"files", "links"}, "storage")
    out_storage = {}
    files = []
    for i, f in enumerate(storage.get("files") or []):
        where = f"storage.files[{i}] ({f.get('path')})"
        only(f, FILE_KEYS, where)
        node = {}
        for key in ("group", "overwrite", "path", "user"):
            if key in f:
                node[key] = f[key]
        contents = f.get("contents") or {}
        only(contents, CONTENTS_KEYS, where + ".contents")
        if ("inline" in contents) == ("source" in contents):
            raise Invalid(f"{where}: exactly one of contents.inline and contents.source")
        resource = {}
        if "inline" in contents:
            if contents.get("compression"):
                raise Invalid(f"{where}: inline contents are compressed by Butane itself")
            source, compression = data_url(contents["inline"].encode())
            resource = {"compression": compression, "source": source}
        else:
            if "compression" in contents:
                resource["compression"] = contents["compression"]
            resource["source"] = contents["source"]
        if "http_headers" in contents:
            resource["httpHeaders"] = contents["http_headers"]
        if contents.get("verification"):
            resource["verification"] = contents["verification"]
        node["contents"] = resource
        if "mode" in f:
            node["mode"] = f["mode"]
        files.append(node)
    if files:
        out_storage["files"] = files
    links = []
    for i, link in enumerate(storage.get("links") or []):
        only(link, LINK_KEYS, f"storage.links[{i}]")
        node = {}
        for key in ("group", "overwrite", "path", "user", "hard", "target"):
            if key in link:
                node[key] = link[key]
        links.append(node)
    if links:
        out_storage["links"] = links
    if out_storage:
        ign["storage"] = out_storage

    systemd = bu.get("systemd") or {}
    only(systemd, {"units"}, "systemd")
    units = []
    for i, unit in enumerate(systemd.get("units") or []):
        only(unit, UNIT_KEYS, f"systemd.units[{i}]")
        node = {}
        if "contents" in unit:
            node["contents"] = unit["contents"]
        if "dropins" in unit:
            for j, dropin in enumerate(unit["dropins"]):
                only(dropin, DROPIN_KEYS, f"systemd.units[{i}].dropins[{j}]")
            node["dropins"] = unit["dropins"]
        for key in ("enabled", "mask", "name"):
            if key in unit:
                node[key] = unit[key]
        units.append(node)
    if units:
        ign["systemd"] = {"units": units}
    return ign


def meaning(ign: dict) -> dict:
    """What an Ignition config does, independent of how contents are encoded
    and of the order of keys and entries."""
    storage = ign.get("storage", {})
    files = {}
    for f in storage.get("files", []):
        contents = dict(f.get("contents", {}))
        source = contents.pop("source", None)
        compression = contents.pop("compression", "") or ""
        if source is not None and source.startswith("data:"):
            contents["data"] = decode_source(source, compression)
        else:
            contents["source"] = source
            if compression:
                contents["compression"] = compression
        if not contents.get("verification"):
            contents.pop("verification", None)
        files[f["path"]] = {
            "mode": f.get("mode"),
            "overwrite": bool(f.get("overwrite", False)),
            "user": f.get("user") or None,
            "group": f.get("group") or None,
            "contents": contents,
            "append": f.get("append") or None,
        }
    links = {
        link["path"]: {
            "target": link.get("target"),
            "hard": bool(link.get("hard", False)),
            "overwrite": bool(link.get("overwrite", False)),
        }
        for link in storage.get("links", [])
    }
    units = {
        unit["name"]: {
            "enabled": unit.get("enabled"),
            "mask": bool(unit.get("mask", False)),
            "contents": unit.get("contents"),
            "dropins": sorted((d["name"], d.get("contents")) for d in unit.get("dropins", [])),
        }
        for unit in ign.get("systemd", {}).get("units", [])
    }
    rest = {k: v for k, v in ign.items() if k not in ("storage", "systemd", "ignition")}
    rest.update({k: v for k, v in storage.items() if k not in ("files", "links")})
    return {
        "version": ign.get("ignition", {}).get("version"),
        "files": files,
        "links": links,
        "units": units,
        "other": rest,
    }


def differences(want, have, where=""):
    if isinstance(want, dict) and isinstance(have, dict):
        for key in sorted(set(want) | set(have), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in have:
                yield f"{sub}: in baton.bu, missing from baton.ign"
            elif key not in want:
                yield f"{sub}: in baton.ign, not in baton.bu"
            else:
                yield from differences(want[key], have[key], sub)
    elif want != have:
        show = lambda v: (v.decode(errors="replace") if isinstance(v, bytes) else repr(v))[:200]
        yield f"{where}: baton.bu gives {show(want)}, baton.ign has {show(have)}"


def requirements(m: dict, version: str):
    """What baton's Flatcar setup must contain."""
    image = f"/opt/extensions/baton/baton-{version}-x86-64.raw"
    if image not in m["files"]:
        yield f"no file {image} (the sysext of version {version}, from the workspace Cargo.toml)"
    link = m["links"].get("/etc/extensions/baton.raw")
    if link is None:
        yield "no link /etc/extensions/baton.raw"
    elif link["target"] != image or link["hard"]:
        yield f"/etc/extensions/baton.raw must be a symbolic link to {image}, not {link}"
    for path, mode in (("/etc/baton/tls/ca.crt", 0o644), ("/etc/baton/tls/host.crt", 0o644),
                       ("/etc/baton/tls/host.key", 0o600)):
        if path not in m["files"]:
            yield f"no file {path} (the host's TLS identity)"
        elif m["files"][path].get("mode") != mode:
            yield f"{path} has mode {oct(m['files'][path].get('mode') or 0)}, expected {oct(mode)}"
    if "/etc/baton/baton.toml" not in m["files"]:
        yield "no file /etc/baton/baton.toml"
    else:
        data = m["files"]["/etc/baton/baton.toml"]["contents"].get("data", b"")
        try:
            tomllib.loads(data.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            yield f"/etc/baton/baton.toml is not valid TOML: {e}"
    update = m["files"].get("/etc/flatcar/update.conf")
    if update is None:
        yield "no file /etc/flatcar/update.conf"
    else:
        lines = update["contents"].get("data", b"").decode().splitlines()
        if "REBOOT_STRATEGY=off" not in lines:
            yield "/etc/flatcar/update.conf does not set REBOOT_STRATEGY=off"
        if not update["overwrite"]:
            yield "/etc/flatcar/update.conf needs overwrite: true (the file may exist)"
    if not m["units"].get("locksmithd.service", {}).get("mask"):
        yield "locksmithd.service is not masked"


def main(argv):
    if argv not in ([], ["--write"]):
        print("usage: check.py [--write]", file=sys.stderr)
        return 2
    try:
        import yaml
    except ImportError:
        print("check.py needs PyYAML (apt-get install python3-yaml)", file=sys.stderr)
        return 2
    try:
        bu = yaml.safe_load(BUTANE.read_text())
        version = tomllib.loads(WORKSPACE.read_text())["workspace"]["package"]["version"]
        want = translate(bu)
    except (OSError, yaml.YAMLError, KeyError, tomllib.TOMLDecodeError, Invalid) as e:
        print(f"check.py: {e}", file=sys.stderr)
        return 2
    if argv == ["--write"]:
        IGNITION.write_text(json.dumps(want, indent=2) + "\n")
        print(f"wrote {IGNITION}")
    try:
        have = json.loads(IGNITION.read_text())
        problems = list(differences(meaning(want), meaning(have)))
        problems += [f"baton.bu: {p}" for p in requirements(meaning(want), version)]
    except (OSError, json.JSONDecodeError, KeyError, Invalid) as e:
        print(f"check.py: {IGNITION.name}: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"check.py: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check.py: {BUTANE.name} and {IGNITION.name} are in step (Ignition {want['ignition']['version']}, baton {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
