#!/usr/bin/env python3
"""baton on real systemd hosts (Python 3.11, standard library only).

Started by tests/host/run.sh, which installs the Debian packages this needs.
Boots Debian bookworm hosts with systemd-nspawn, installs baton's .deb in each
with dpkg, and checks what an operator relies on: the READY handshake, STATUS=
text, structured journal fields, the watchdog, a 3-voter cluster across
hosts, a reboot through logind followed by the agent finishing its roll, and
a broken config failing fast without a restart loop.

Everything this creates (network namespaces, bridge, veths, cgroups or scope
units, overlay upper dirs, processes) carries the prefix "bth" or lives under
WORK, and is removed on exit, on failure, on Ctrl-C and SIGTERM, and (if a
previous run was killed) before the run starts.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BATON_HOST_TESTS_CACHE", "/var/cache/baton-host-tests"))
ROOTFS = CACHE / "rootfs"
STAMP = CACHE / "rootfs.stamp"
WORK = Path("/var/tmp/baton-host-tests")  # upper dirs, /share; removed at exit
LOGS = Path(os.environ.get("BATON_HOST_TESTS_LOGS", "/var/tmp/baton-host-tests-logs"))
LOCK = Path("/run/lock/baton-host-tests.lock")
PREFIX = "bth"
BRIDGE = "bth-br0"
SUBNET = "10.213.0"  # a /24 that exists only on BRIDGE, inside this machine
PORT = 7421
CGROUP = "baton-host-tests"  # own cgroups when systemd is not PID 1
SUITE = "bookworm"
DEBOOTSTRAP_ARGS = ["--variant=minbase", "--include=systemd,systemd-sysv,dbus,iproute2", SUITE]
GUEST_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "SYSTEMD_PAGER=cat",
    "SYSTEMD_COLORS=0",
    "TERM=dumb",
]
SYSTEMD_IS_PID1 = os.path.isdir("/run/systemd/system")
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def debug(msg: str) -> None:
    """To the run log only (LOGS/harness.log)."""
    if LOGS.is_dir():
        with open(LOGS / "harness.log", "a") as f:
            f.write(f"[{time.monotonic() - T0:7.2f}s] {msg}\n")


def run(argv: list[str], check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    debug("$ " + shlex.join(argv))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        debug(f"  -> {p.returncode}: {p.stderr.strip()[-500:]}")
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return p


class CheckFailed(Exception):
    pass


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def wait_for(what: str, fn, timeout: float, interval: float = 0.2):
    """Calls fn until it returns something truthy; raises CheckFailed after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except (CheckFailed, RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            last = None
            debug(f"wait_for({what}): {e}")
        if last:
            return last
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Rootfs (cached)


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses for the main archive."""
    entries: list[tuple[str, list[str]]] = []  # (uri, suites)
    lists = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in lists:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    entries.append((line[1], [line[2]]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", Path(path).read_text()):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    for uri, suites in entries:
        if SUITE in suites and "security" not in uri:
            return uri.rstrip("/")
    for uri, _ in entries:
        if "debian" in uri and "security" not in uri:
            return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def ensure_rootfs(rebuild: bool) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.exists() and ROOTFS.is_dir() and not rebuild:
            say(f"rootfs: cached {ROOTFS} ({STAMP.read_text().strip()})")
            return
        STAMP.unlink(missing_ok=True)
        mirror = apt_mirror()
        tmp = CACHE / "rootfs.new"
        for d in (tmp, ROOTFS):
            if d.exists():
                shutil.rmtree(d)
        argv = ["debootstrap", *DEBOOTSTRAP_ARGS, str(tmp), mirror]
        say(f"rootfs: {shlex.join(argv)} (once; cached in {CACHE})")
        t = time.monotonic()
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            sys.stdout.write(p.stdout[-3000:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap exited {p.returncode}")
        # Each host gets its own machine id and host name (written into its
        # upper dir); the tree's own would be shared by every host.
        (tmp / "etc/machine-id").write_text("")
        (tmp / "etc/hostname").write_text("localhost\n")
        tmp.rename(ROOTFS)
        STAMP.write_text(f"{SUITE} from {mirror}, built {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        say(f"rootfs: built in {time.monotonic() - t:.0f}s ({STAMP.read_text().strip()})")


# --------------------------------------------------------------------------
# Hosts


class Host:
    """One booted Debian host: a systemd-nspawn container with its own netns."""

    def __init__(self, n: int):
        self.n = n
        self.name = f"h{n}"
        self.ip = f"{SUBNET}.{10 + n}"
        self.netns = f"{PREFIX}-{self.name}"
        self.veth = f"{PREFIX}-v{n}"
        self.upper = WORK / "upper" / self.name
        self.machine_id = uuid.uuid4().hex
        self.console = LOGS / f"{self.name}-console.log"
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.generation = 0  # boots started
        self.exits: list[int] = []  # nspawn exit codes, in order
        self.stopping = False
        self.termed: subprocess.Popen | None = None  # the nspawn that got its SIGTERM
        self.supervisor: threading.Thread | None = None
        self.error: str | None = None

    # -- setup ---------------------------------------------------------------

    def prepare(self) -> None:
        etc = self.upper / "etc"
        etc.mkdir(parents=True)
        (etc / "hostname").write_text(f"{self.name}\n")
        (etc / "machine-id").write_text(f"{self.machine_id}\n")
        hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{self.name}"]
        hosts += [f"{SUBNET}.{10 + i}\th{i}" for i in range(1, 10) if i != self.n]
        (etc / "hosts").write_text("\n".join(hosts) + "\n")
        # Persistent journal, as on an installed Debian: the previous boot's
        # entries are kept across the reboot.
        (self.upper / "var/log/journal").mkdir(parents=True)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "host0", "netns", self.netns])
        run(["ip", "link", "set", self.veth, "master", BRIDGE, "up"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "host0"])
        run(["ip", "-n", self.netns, "link", "set", "host0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def _nspawn_argv(self) -> list[str]:
        argv = [
            "systemd-nspawn",
            f"--directory={ROOTFS}",
            f"--overlay={ROOTFS}:{self.upper}:/",
            f"--network-namespace-path=/run/netns/{self.netns}",
            f"--machine={self.name}",
            f"--uuid={uuid.UUID(self.machine_id)}",
            "--register=no",
            "--keep-unit",
            f"--bind={WORK / 'share'}:/share",
            "--boot",
            "--console=pipe",
        ]
        if SYSTEMD_IS_PID1:
            # A scope of its own with a delegated cgroup subtree, as
            # --keep-unit expects; a new name per boot, so that the scope of
            # the previous boot may still be going away.
            unit = f"{PREFIX}-{self.name}-{self.generation}"
            argv = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={unit}", "-p", "Delegate=yes", *argv]
        return argv

    def _spawn(self) -> None:
        """Starts nspawn (caller holds self.cond)."""
        self.generation += 1
        self.pid1 = None
        argv = self._nspawn_argv()
        debug(f"{self.name}: boot {self.generation}: {shlex.join(argv)}")
        if not SYSTEMD_IS_PID1:
            # Into this host's own cgroups, then exec nspawn (same PID).
            enter = "".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))} && " for d in own_cgroup_dirs(self.name))
            argv = ["sh", "-c", f'{enter}exec "$@"', "sh", *argv]
        with open(self.console, "a") as console:
            console.write(f"\n===== boot {self.generation} =====\n")
            console.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C on the terminal reaches only the
                # harness, which then sends nspawn exactly one SIGTERM.
                start_new_session=True,
            )

    def start(self) -> None:
        if not SYSTEMD_IS_PID1:
            for d in own_cgroup_dirs(self.name):
                d.mkdir(parents=True, exist_ok=True)
        with self.cond:
            self._spawn()
        self.supervisor = threading.Thread(target=self._supervise, name=f"supervise-{self.name}", daemon=True)
        self.supervisor.start()

    def _supervise(self) -> None:
        """Restarts the container when it rebooted (nspawn exit code 133)."""
        while True:
            proc = self.proc
            assert proc is not None
            rc = proc.wait()
            with self.cond:
                self.exits.append(rc)
                self.pid1 = None
                debug(f"{self.name}: nspawn exited {rc} (boot {self.generation})")
                if rc == 133 and not self.stopping:
                    try:
                        self._spawn()
                    except OSError as e:
                        self.error = f"cannot restart after reboot: {e}"
                        self.cond.notify_all()
                        return
                    self.cond.notify_all()
                    continue
                if not self.stopping:
                    self.error = f"nspawn exited {rc} (see {self.console})"
                self.proc = None
                self.cond.notify_all()
                return

    # -- inside the host -----------------------------------------------------

    def container_pid(self, timeout: float = 30) -> int:
        """PID (on this machine) of the host's systemd: nspawn's child."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                if self.error:
                    raise CheckFailed(f"{self.name}: {self.error}")
                if self.pid1 is not None and os.path.exists(f"/proc/{self.pid1}"):
                    return self.pid1
                proc = self.proc
            if proc is not None:
                pid = nspawn_child(proc.pid)
                if pid is not None:
                    with self.cond:
                        if self.proc is proc:
                            self.pid1 = pid
                            return pid
            if time.monotonic() > deadline:
                raise CheckFailed(f"{self.name}: no running container after {timeout:.0f}s")
            time.sleep(0.05)

    def sh(self, script: str, timeout: float = 30, input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        """Runs `sh -c script` inside the host. The command is outside the
        host's systemd and nsenter forwards no signals, so `timeout` inside
        bounds it."""
        pid = self.container_pid()
        argv = ["nsenter", "-t", str(pid), "-a", "--", "env", "-i", *GUEST_ENV,
                "timeout", "-k", "2", str(int(timeout)), "sh", "-c", script]
        debug(f"{self.name}$ {script}")
        p = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout + 10)
        debug(f"  -> {p.returncode} {p.stdout.strip()[-400:]!r} {p.stderr.strip()[-400:]!r}")
        if check and p.returncode != 0:
            raise CheckFailed(f"{self.name}: `{script}` exited {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}")
        return p

    def out(self, script: str, timeout: float = 30) -> str:
        return self.sh(script, timeout=timeout, check=True).stdout

    def write(self, path: str, text: str) -> None:
        self.sh(f"mkdir -p {shlex.quote(os.path.dirname(path))} && cat > {shlex.quote(path)}", input=text, check=True)

    def show(self, *props: str, unit: str = "baton") -> dict[str, str]:
        args = " ".join(f"-p {p}" for p in props)
        text = self.out(f"systemctl show {unit} {args}")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def boot_id(self) -> str:
        return self.out("cat /proc/sys/kernel/random/boot_id").strip()

    def wait_booted(self, timeout: float = 60, guard=lambda: None) -> str:
        def state():
            guard()
            s = self.sh("systemctl is-system-running", timeout=10).stdout.strip()
            return s if s in ("running", "degraded") else None
        s = wait_for(f"{self.name} to finish booting", state, timeout)
        if s == "degraded":
            debug(f"{self.name} degraded: {self.sh('systemctl --failed --no-legend').stdout}")
        return s

    def journal(self, args: str = "-u baton") -> list[dict]:
        text = self.out(f"journalctl --no-pager -o json {args}")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- stop ----------------------------------------------------------------

    def send_sigterm(self) -> None:
        """nspawn's clean shutdown: exactly one SIGTERM (a second kills the container)."""
        with self.cond:
            self.stopping = True
            if self.proc is not None and self.termed is not self.proc and self.proc.returncode is None:
                self.termed = self.proc
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.proc is None or self.error is not None, timeout)


def nspawn_child(pid: int) -> int | None:
    """The container's PID 1: nspawn's child once it has exec'd systemd."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return int(child)
    return None


def own_cgroup_dirs(name: str | None = None) -> list[Path]:
    """This run's cgroups (systemd not PID 1): in the named systemd
    hierarchy and the unified one, whichever are mounted."""
    roots = []
    for hier in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        if os.path.isfile(f"{hier}/cgroup.procs"):
            roots.append(Path(hier))
    if not roots and os.path.isfile("/sys/fs/cgroup/cgroup.procs"):
        roots.append(Path("/sys/fs/cgroup"))
    return [r / CGROUP / name if name else r / CGROUP for r in roots]


# --------------------------------------------------------------------------
# Setup and teardown of everything this run creates


def cgroup_pids(root: Path) -> list[int]:
    pids = []
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(x) for x in procs.read_text().split()]
    return pids


def remove_cgroup_tree(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def kill_leftovers() -> list[str]:
    """Kills every process this run (or a killed earlier run) started in
    its containers; returns what it had to kill."""
    killed = []
    if SYSTEMD_IS_PID1:
        p = run(["systemctl", "list-units", "--all", "--plain", "--no-legend", f"{PREFIX}-h*.scope"], check=False)
        for line in p.stdout.splitlines():
            unit = line.split()[0]
            killed.append(unit)
            run(["systemctl", "kill", "--signal=SIGKILL", unit], check=False)
            run(["systemctl", "stop", unit], check=False)
            run(["systemctl", "reset-failed", unit], check=False)
    for root in own_cgroup_dirs():
        for _ in range(50):
            pids = cgroup_pids(root)
            if not pids:
                break
            killed += [str(p) for p in pids]
            kill_file = root / "cgroup.kill"
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        remove_cgroup_tree(root)
    return sorted(set(killed))


def delete_network() -> None:
    for ns in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = ns.split()[0] if ns.split() else ""
        if name.startswith(f"{PREFIX}-h"):
            run(["ip", "netns", "delete", name], check=False)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for m in re.finditer(rf"^\d+: ({PREFIX}-[\w-]+?)(@\S+)?:", links, re.M):
        run(["ip", "link", "delete", m.group(1)], check=False)


def remove_work() -> None:
    if WORK.exists():
        # Overlay work dirs have mode 000 entries; rm -rf as root copes.
        run(["rm", "-rf", "--one-file-system", str(WORK)], check=False)
    # nspawn's per-machine propagation dir, if it left one (only if empty).
    for n in range(1, 10):
        with contextlib.suppress(OSError):
            os.rmdir(f"/run/systemd/nspawn/propagate/h{n}")


def leftovers_report() -> list[str]:
    left = []
    nss = [l.split()[0] for l in run(["ip", "netns", "list"], check=False).stdout.splitlines() if l.split()]
    left += [f"netns {n}" for n in nss if n.startswith(f"{PREFIX}-")]
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    left += [f"link {m.group(1)}" for m in re.finditer(rf"^\d+: ({PREFIX}-[\w-]+?)(@\S+)?:", links, re.M)]
    if WORK.exists():
        left.append(f"dir {WORK}")
    for root in own_cgroup_dirs():
        if root.exists():
            left.append(f"cgroup {root}")
    with open("/proc/self/mountinfo") as f:
        left += [f"mount {l.split()[4]}" for l in f if str(WORK) in l or f"/run/netns/{PREFIX}-" in l]
    if SYSTEMD_IS_PID1:
        p = run(["systemctl", "list-units", "--all", "--plain", "--no-legend", f"{PREFIX}-h*.scope"], check=False)
        left += [f"unit {l.split()[0]}" for l in p.stdout.splitlines() if l.strip()]
    return left


def setup_network() -> None:
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


# --------------------------------------------------------------------------
# The checks


VOTERS = [1, 2, 3]
CLIENT = 4  # a client host whose agent reboots it (sentinel source, logind)
BAD = 5  # gets a broken config
GROUP = "workers"


def voters_toml() -> str:
    lines = ",\n".join(f'  {{ id = {i}, name = "h{i}", address = "{SUBNET}.{10 + i}:{PORT}" }}' for i in VOTERS)
    return f"voters = [\n{lines},\n]\n"


def voter_config(h: Host) -> str:
    return f"""# written by tests/host/harness.py: voter {h.n}
[node]
name = "{h.name}"

[cluster]
listen = "{h.ip}:{PORT}"
{voters_toml()}
[updates]
source = "none"
"""


def client_config(h: Host) -> str:
    return f"""# written by tests/host/harness.py: a client host that rolls on a sentinel
[node]
name = "{h.name}"
group = "{GROUP}"

[cluster]
{voters_toml()}
[updates]
source = "sentinel"
sentinel_file = "/run/reboot-required"
poll_interval = "1s"

[reboot]
method = "logind"
"""


# A broken config as a package, Ignition or cloud-init might install it:
# line 11 has a key that does not exist.
BROKEN_LINE = 11
BROKEN_KEY = "updates.sentinel_fil"


def broken_config(h: Host) -> str:
    text = f"""# written by tests/host/harness.py: broken on line {BROKEN_LINE}
[node]
name = "{h.name}"
group = "{GROUP}"

[cluster]
voters = [ {{ id = 1, name = "h1", address = "{SUBNET}.11:{PORT}" }} ]

[updates]
source = "sentinel"
sentinel_fil = "/run/reboot-required"
"""
    assert text.splitlines()[BROKEN_LINE - 1].startswith("sentinel_fil ")
    return text


# Run inside a voter: restart baton without blocking, poll is-active as
# fast as systemctl answers, and connect to the listen port the moment it
# says active. Prints "polls=N connect=ok|refused".
READY_PROBE = r"""
systemctl stop baton
systemctl start --no-block baton
n=0
until systemctl is-active -q baton; do
  n=$((n+1))
  if [ "$(systemctl show -p ActiveState --value baton)" = failed ]; then echo "polls=$n failed"; exit 3; fi
done
if bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>/dev/null; then c=ok; else c=refused; fi
echo "polls=$n connect=$c"
"""


def status_line(h: Host) -> str:
    text = h.sh("systemctl status baton --no-pager --lines=0").stdout
    m = re.search(r'^\s*Status: "(.*)"\s*$', text, re.M)
    return m.group(1) if m else ""


def baton_json(h: Host, args: str, timeout: float = 15) -> dict:
    return json.loads(h.out(f"baton --request-timeout 3s {args}", timeout=timeout))


def active_enter_usec(h: Host) -> int:
    out = h.out("busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1/unit/baton_2eservice "
                "org.freedesktop.systemd1.Unit ActiveEnterTimestamp")
    return int(out.split()[1])


class Suite:
    def __init__(self, hosts: dict[int, Host], deb: Path):
        self.h = hosts
        self.deb = deb
        self.results: list[tuple[str, bool, float, str]] = []
        self.fresh_status: dict[int, str] = {}

    def check(self, name: str, fn) -> bool:
        t = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except CheckFailed as e:
            ok, detail = False, str(e)
        except Exception as e:  # a harness error is a failed check, not a crash
            ok, detail = False, f"{type(e).__name__}: {e}"
        dt = time.monotonic() - t
        self.results.append((name, ok, dt, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name} ({dt:.1f}s){': ' + detail if detail else ''}", flush=True)
        debug(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        return ok

    # -- install -------------------------------------------------------------

    def install_all(self, dropins: list[str]) -> None:
        for h in self.h.values():
            t = time.monotonic()
            h.sh(f"dpkg -i /share/{self.deb.name}", timeout=120, check=True)
            if dropins:
                h.write("/etc/systemd/system/baton.service.d/90-host-tests.conf",
                        "# --unit-dropin of tests/host/harness.py\n[Service]\n" + "\n".join(dropins) + "\n")
                h.sh("systemctl daemon-reload", check=True)
            # As installed: the package's default config, unit enabled and started.
            self.fresh_status[h.n] = wait_for(f"{h.name}: STATUS= after install", lambda: status_line(h), 15)
            say(f"{h.name}: dpkg -i {self.deb.name}: {h.out('systemctl is-enabled baton').strip()}, "
                f"{h.sh('systemctl is-active baton').stdout.strip()} ({time.monotonic() - t:.1f}s)")

    def provision_tls(self) -> None:
        """Mutual TLS as an operator sets it up: a CA made with `baton cert
        init` (on h1, into the shared dir), each host's certificate issued
        for its name, role and address, installed at the default paths
        (/etc/baton/tls/{ca,host}.crt, host.key 0600); h2 and h3 also get an
        admin certificate for the CLI."""
        h1 = self.h[1]
        h1.sh("rm -rf /share/tls && baton cert init --dir /share/tls", check=True)
        for i in [*VOTERS, CLIENT]:
            h = self.h[i]
            role = "voter" if i in VOTERS else "host"
            h1.sh(f"baton cert issue {h.name} --role {role} --address {h.ip} --dir /share/tls", check=True)
            h.sh("install -d -m 0755 /etc/baton/tls && install -m 0644 /share/tls/ca.crt /etc/baton/tls/ca.crt"
                 f" && install -m 0644 /share/tls/{h.name}.crt /etc/baton/tls/host.crt"
                 f" && install -m 0600 /share/tls/{h.name}.key /etc/baton/tls/host.key", check=True)
        h1.sh("baton cert issue ops --role admin --dir /share/tls", check=True)
        for i in (2, 3):
            self.h[i].sh("install -m 0644 /share/tls/ops.crt /etc/baton/tls/admin.crt"
                         " && install -m 0600 /share/tls/ops.key /etc/baton/tls/admin.key", check=True)

    def configure(self) -> None:
        self.provision_tls()
        for i in VOTERS:
            self.h[i].write("/etc/baton/baton.toml", voter_config(self.h[i]))
        self.h[CLIENT].write("/etc/baton/baton.toml", client_config(self.h[CLIENT]))

    # -- 1 -------------------------------------------------------------------

    def ready_handshake(self) -> str:
        """The voters are (re)started with their config: each unit must say
        active only once its gRPC port accepts connections."""
        self.configure()
        results: dict[int, subprocess.CompletedProcess] = {}

        def probe(i):
            h = self.h[i]
            results[i] = h.sh(READY_PROBE.format(ip=h.ip, port=PORT), timeout=60)

        threads = [threading.Thread(target=probe, args=(i,)) for i in VOTERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.h[CLIENT].sh("systemctl restart baton", timeout=60, check=True)
        notes = []
        for i in VOTERS:
            h, p = self.h[i], results[i]
            expect(p.returncode == 0 and "connect=ok" in p.stdout,
                   f"{h.name}: port {h.ip}:{PORT} not accepting when the unit first said active "
                   f"({p.stdout.strip()} {p.stderr.strip()[-300:]})")
            props = h.show("ActiveState", "SubState", "Type", "InvocationID")
            expect(props["Type"] == "notify", f"{h.name}: Type={props['Type']}, expected notify")
            expect(props["ActiveState"] == "active", f"{h.name}: ActiveState={props['ActiveState']}")
            active = active_enter_usec(h)
            serving = [e for e in h.journal(f"_SYSTEMD_INVOCATION_ID={props['InvocationID']}")
                       if re.search(r"^voter \d+ .* serving$", e.get("MESSAGE", ""))]
            expect(serving, f"{h.name}: no journal line 'voter ... serving' for this start")
            sent = int(serving[0].get("_SOURCE_REALTIME_TIMESTAMP") or serving[0]["__REALTIME_TIMESTAMP"])
            expect(sent <= active, f"{h.name}: unit active at {active} before 'serving' was logged at {sent}")
            notes.append(f"{h.name} serving {(active - sent) / 1000:.1f}ms before active, "
                         f"{p.stdout.strip().split()[0]}")
        configured = [h for h in self.h.values() if h.n != BAD]
        for h in configured:
            state = h.sh("systemctl is-active baton").stdout.strip()
            expect(state == "active", f"{h.name}: systemctl is-active baton says {state!r}")
        return f"{', '.join(h.name for h in configured)} active; " + "; ".join(notes)

    # -- 2 -------------------------------------------------------------------

    def status_text(self) -> str:
        fresh = self.fresh_status[CLIENT]
        expect(fresh.startswith("not configured: no [cluster] voters in /etc/baton/baton.toml"),
               f"fresh install: systemctl status shows {fresh!r}, expected the 'not configured' text")
        voter = status_line(self.h[1])
        expect(voter.startswith("serving the reboot lease"),
               f"voter h1: systemctl status shows {voter!r}, expected 'serving the reboot lease...'")
        client = wait_for("h4 STATUS idle", lambda: (s := status_line(self.h[CLIENT])) == "idle: no update pending" and s, 20)
        return f"fresh install: {fresh!r}; voter: {voter!r}; client: {client!r}"

    # -- 3 -------------------------------------------------------------------

    def journal_fields(self) -> str:
        problems, notes = [], []
        for h in self.h.values():
            if h.n == BAD:
                continue
            entries = [e for e in h.journal("-u baton -b") if e.get("_COMM") == "baton"]
            if not entries:
                problems.append(f"{h.name}: no journal entries from the baton process")
                continue
            idents = {str(e.get("SYSLOG_IDENTIFIER")) for e in entries}
            if idents != {"baton"}:
                problems.append(f"{h.name}: SYSLOG_IDENTIFIER of baton's entries: {sorted(idents)}")
            fields = sorted({k for e in entries for k in e if k.startswith("BATON_")})
            notes.append(f"{h.name}: {len(entries)} entries, {', '.join(fields) or 'no BATON_* field'}")
            if not fields:
                problems.append(f"{h.name}: none of {len(entries)} entries carries a BATON_* field "
                                f"(e.g. {entries[-1].get('MESSAGE')!r})")
            if h.n == CLIENT:
                # The idle agent's own start event should say its phase, so
                # that `journalctl -u baton BATON_PHASE=idle` finds idle hosts.
                start = [e for e in entries if e.get("MESSAGE", "").startswith("host agent for ")]
                start_fields = sorted(k for k in (start[-1] if start else {}) if k.startswith("BATON_"))
                if not h.journal("-u baton -b BATON_PHASE=idle"):
                    problems.append(
                        f"{h.name}: `journalctl -u baton BATON_PHASE=idle` finds nothing on this idle host: "
                        f"the agent's start event {start[-1].get('MESSAGE') if start else '(none)'!r} "
                        f"carries {', '.join(start_fields) or 'no BATON_* field'} "
                        f"(phase transitions do carry BATON_PHASE: see check 6)")
        expect(not problems, "; ".join(problems) + " [seen: " + "; ".join(notes) + "]")
        return "SYSLOG_IDENTIFIER=baton; " + "; ".join(notes)

    # -- 4 -------------------------------------------------------------------

    def watchdog(self) -> str:
        h = self.h[CLIENT]
        before = h.show("MainPID", "NRestarts", "WatchdogUSec", "ActiveState")
        expect(before["ActiveState"] == "active", f"h4: baton is {before['ActiveState']}")
        expect(before["WatchdogUSec"] not in ("0", "infinity", ""), f"h4: no watchdog (WatchdogUSec={before['WatchdogUSec']})")
        pid = before["MainPID"]
        h.sh(f"kill -STOP {pid}", check=True)
        t = time.monotonic()

        def restarted():
            now = h.show("MainPID", "NRestarts", "ActiveState")
            return (now["ActiveState"] == "active" and now["MainPID"] not in ("0", pid)
                    and int(now["NRestarts"]) == int(before["NRestarts"]) + 1) and now

        now = wait_for("the watchdog to restart baton", restarted, 120, interval=1)
        dt = time.monotonic() - t
        log = h.out("journalctl --no-pager -b -u baton -o cat")
        expect("Watchdog timeout" in log, "h4: no 'Watchdog timeout' from systemd in the journal")
        wait_for("h4 STATUS idle again", lambda: status_line(h) == "idle: no update pending", 20)
        return (f"WatchdogSec={before['WatchdogUSec']}; SIGSTOP pid {pid}: 'Watchdog timeout', "
                f"restarted as pid {now['MainPID']} after {dt:.0f}s, NRestarts {before['NRestarts']} -> {now['NRestarts']}")

    # -- 5 -------------------------------------------------------------------

    def cluster(self) -> str:
        endpoints = ",".join(f"{SUBNET}.{10 + i}:{PORT}" for i in VOTERS)

        def formed():
            s = baton_json(self.h[1], "status --json")
            ok = s.get("leader") in VOTERS and all(v.get("reachable") for v in s.get("voters", [])) \
                and len(s.get("voters", [])) == 3
            return ok and s

        s = wait_for("a leader and 3 reachable voters", formed, 30, interval=0.5)
        # The CLI acts for other holders only with an admin certificate.
        admin = "--cert /etc/baton/tls/admin.crt --key /etc/baton/tls/admin.key"
        acq = self.h[2].sh(f"baton --endpoint {endpoints} {admin} lease acquire host-test --holder h2-cli", timeout=20)
        expect(acq.returncode == 0, f"h2: lease acquire exited {acq.returncode}: {acq.stderr.strip()}")
        token = int(acq.stdout.strip())
        # Read from another host, through its own config's default endpoint.
        s3 = baton_json(self.h[3], "status --json")
        holders = s3.get("groups", {}).get("host-test", {}).get("holders", [])
        expect([(x.get("holder"), x.get("token")) for x in holders] == [("h2-cli", token)],
               f"h3: status --json shows holders {holders}, expected h2-cli with token {token}")
        expect(holders[0].get("machine_id") == self.h[2].machine_id,
               f"h3: holder machine_id {holders[0].get('machine_id')!r}, expected h2's {self.h[2].machine_id}")
        leader = self.h[s3["leader"]]
        grants = wait_for(f"{leader.name}: the grant in the journal", lambda: [
            e for e in leader.journal("-u baton -b BATON_HOLDER=h2-cli") if e.get("BATON_TOKEN") == str(token)], 5)
        expect(grants[0].get("BATON_GROUP") == "host-test",
               f"{leader.name}: grant event fields {[k for k in grants[0] if k.startswith('BATON_')]}")
        # Without it, a voter's own certificate may not act for another holder.
        denied = self.h[3].sh(f"baton --endpoint {endpoints} lease acquire host-test --holder h3-cli", timeout=20)
        expect(denied.returncode == 77 and "permission denied" in denied.stderr,
               f"h3: acquire for another holder with h3's own certificate exited {denied.returncode}: "
               f"{denied.stderr.strip()}")
        second = self.h[3].sh(f"baton --endpoint {endpoints} {admin} lease acquire host-test --holder h3-cli", timeout=20)
        expect(second.returncode == 75, f"h3: second acquire exited {second.returncode}, expected 75 (queued)")
        rel = self.h[2].sh(f"baton --endpoint {endpoints} {admin} lease release host-test --holder h2-cli --token {token}", timeout=20)
        expect(rel.returncode == 0, f"h2: release exited {rel.returncode}: {rel.stderr.strip()}")
        self.h[3].sh(f"baton --endpoint {endpoints} {admin} lease release host-test --holder h3-cli", timeout=20)
        s1 = baton_json(self.h[1], "status --json")
        expect(not s1["groups"]["host-test"]["holders"], f"h1: holders after release: {s1['groups']['host-test']['holders']}")
        return (f"leader h{s['leader']} (term {s['term']}), 3/3 voters reachable; h2 acquired host-test token {token}, "
                f"h3 saw it (machine id ok), the leader's journal has it (BATON_GROUP/HOLDER/TOKEN), "
                f"a second holder queued (75), released; all over mutual TLS, a voter's certificate refused (77) "
                f"for another holder")

    # -- 6 -------------------------------------------------------------------

    def reboot(self) -> str:
        h = self.h[CLIENT]
        endpoints = ",".join(f"{SUBNET}.{10 + i}:{PORT}" for i in VOTERS)
        boot0 = h.boot_id()
        seen0 = service_boot_id(h)
        gen0, exits0 = h.generation, len(h.exits)
        phase0 = json.loads(h.out("cat /var/lib/baton/agent.json 2>/dev/null || echo '{\"phase\":\"idle\"}'"))
        expect(phase0.get("phase") == "idle", f"h4: agent.json before: {phase0}")

        polled = [0.0]

        def no_loop():
            # Rebooted again: nspawn restarted twice, or (if the second
            # shutdown hangs) the agent's journal shows 'rebooting' in a
            # second boot.
            if h.generation > gen0 + 1:
                raise RebootLoop()
            if time.monotonic() - polled[0] > 1:
                polled[0] = time.monotonic()
                if sum(1 for _, ph in phases_by_boot(h) if "rebooting" in ph) >= 2:
                    raise RebootLoop()

        h.sh("touch /run/reboot-required", check=True)
        t = time.monotonic()
        try:
            wait_for("h4 to reboot (nspawn exit 133 and a new boot)", lambda: h.generation > gen0, 90, interval=0.1)
            t_reboot = time.monotonic() - t
            h.wait_booted(guard=no_loop)
            boot1 = h.boot_id()
            no_loop()

            def rolled():
                no_loop()
                state = json.loads(h.out("cat /var/lib/baton/agent.json"))
                return state.get("phase") == "idle" and state

            wait_for("h4's agent to finish the roll (agent.json phase idle)", rolled, 60, interval=0.5)
            t_done = time.monotonic() - t
            no_loop()
        except (RebootLoop, CheckFailed) as e:
            # Stop the host (it may be rebooting again and again, holding
            # the lease), then tell from its journal on disk what happened.
            what = "reboot loop" if isinstance(e, RebootLoop) else str(e)
            h.send_sigterm()
            h.wait_stopped(20)
            boots = phases_by_boot(h)
            story = " | ".join(f"boot {i + 1}: {'>'.join(dedup(ph)) or '-'}" for i, (_, ph) in enumerate(boots))
            rebooting_boots = [b for b, ph in boots if "rebooting" in ph]
            if len(rebooting_boots) < 2:
                raise CheckFailed(f"{what}; baton's phases per boot of h4: {story}")
            msg = (f"reboot loop: h4 came back (nspawn exit 133, started again), but in {len(rebooting_boots) - 1} "
                   f"later boot(s) the agent resumed in phase 'rebooting' and called Reboot again, holding the lease "
                   f"(the harness stopped h4, {time.monotonic() - t:.0f}s after the first reboot; "
                   f"phases per boot: {story})")
            if seen0 and seen0 != boot0:
                hiding = boot_id_hiding_settings(self.h[1])
                msg += (f". Cause: the container's boot id changes at every boot (it was {boot0}), but baton.service "
                        f"read /proc/sys/kernel/random/boot_id as {seen0}, the kernel's, which no container boot "
                        f"changes: in this sandbox the unit gets a /proc without nspawn's per-boot boot_id bind mount "
                        f"(each of these settings of the unit alone does that: {', '.join(hiding) or '?'})")
            raise CheckFailed(msg)
        codes = h.exits[exits0:]
        expect(codes == [133], f"h4: nspawn exit codes {codes}, expected [133]")
        expect(boot1 != boot0, f"h4: boot id unchanged ({boot0})")
        s = baton_json(h, f"--endpoint {endpoints} status --json")
        holders = s.get("groups", {}).get(GROUP, {}).get("holders", [])
        expect(not holders, f"lease {GROUP} still held after the roll: {holders}")
        expect(h.sh("test -e /run/reboot-required").returncode != 0, "h4: /run/reboot-required survived the reboot")
        # What the journal says, across the two boots.
        prev = h.journal(f"-u baton _BOOT_ID={boot0.replace('-', '')}")
        now = h.journal(f"-u baton _BOOT_ID={boot1.replace('-', '')}")
        prev_phases = [e["BATON_PHASE"] for e in prev if "BATON_PHASE" in e]
        now_phases = [e["BATON_PHASE"] for e in now if "BATON_PHASE" in e]
        expect("rebooting" in prev_phases, f"h4: previous boot's phases {prev_phases}, no 'rebooting'")
        rebooting = [e for e in prev if e.get("BATON_PHASE") == "rebooting"]
        tokens = {e.get("BATON_TOKEN") for e in rebooting} - {None}
        expect(tokens and {e.get("BATON_GROUP") for e in rebooting} - {None} == {GROUP},
               f"h4: the 'rebooting' events carry no BATON_TOKEN/BATON_GROUP={GROUP}: "
               f"{[{k: v for k, v in e.items() if k.startswith('BATON_')} for e in rebooting]}")
        expect(now_phases and now_phases[-1] == "idle" and "post-reboot" in now_phases,
               f"h4: this boot's phases {now_phases}, expected post-reboot ... idle")
        status = status_line(h)
        expect(status == "idle: no update pending", f"h4: STATUS after the roll {status!r}")
        return (f"sentinel -> lease -> logind Reboot -> nspawn exit 133 after {t_reboot:.1f}s, started again; "
                f"boot id {boot0[:8]} -> {boot1[:8]}; token {','.join(sorted(tokens))}; idle again after {t_done:.1f}s; "
                f"phases before: {'>'.join(dedup(prev_phases))}; after: {'>'.join(dedup(now_phases))}; "
                f"{GROUP} has no holder")

    # -- 7 -------------------------------------------------------------------

    def bad_config(self) -> str:
        h = self.h[BAD]
        h.write("/etc/baton/baton.toml", broken_config(h))
        t = time.monotonic()
        p = h.sh("systemctl restart baton", timeout=60)
        dt = time.monotonic() - t
        expect(p.returncode != 0, f"{h.name}: systemctl restart baton succeeded with a broken config")
        expect(dt < 10, f"{h.name}: the failing start took {dt:.1f}s")
        props = ("ActiveState", "Result", "ExecMainStatus", "NRestarts", "MainPID")
        first = h.show(*props)
        # Longer than RestartSec=5s: a restart would have happened by now.
        time.sleep(7)
        later = h.show(*props)
        for when, s in (("at once", first), ("after 7s", later)):
            expect(s["ActiveState"] == "failed" and s["Result"] == "exit-code" and s["ExecMainStatus"] == "78"
                   and s["NRestarts"] == "0",
                   f"{h.name} {when}: {' '.join(f'{k}={v}' for k, v in s.items())} "
                   "(expected failed, exit-code, 78, NRestarts=0)")
        starts = h.out("journalctl --no-pager -b -u baton -o cat | grep -c 'starting as' || true").strip()
        where = f"/etc/baton/baton.toml:{BROKEN_LINE}: {BROKEN_KEY}"
        status = h.sh("systemctl status baton --no-pager --lines=20 --full").stdout
        expect(where in status, f"{h.name}: systemctl status does not show {where!r}:\n{status}")
        expect("status=78" in status, f"{h.name}: systemctl status does not show status=78:\n{status}")
        journal = h.out("journalctl --no-pager -b -u baton -o cat")
        expect(where in journal, f"{h.name}: journal of baton.service does not show {where!r}")
        line = next(l.strip() for l in status.splitlines() if where in l)
        return (f"restart failed in {dt:.1f}s, exit status 78, still failed with NRestarts=0 after 7s; "
                f"systemctl status and journal show: {line}")


    # -- 8 -------------------------------------------------------------------

    def waiting_voter(self) -> str:
        """A voter started before a majority of its voters answer waits for
        them, however long the operator takes: systemd keeps it starting
        (EXTEND_TIMEOUT_USEC) past TimeoutStartSec= instead of killing and
        restarting it, shows why in STATUS=, and `systemctl stop` ends it at
        once (it hung until SIGKILL before)."""
        h = self.h[BAD]
        timeout_start = 12
        # h5 alone: the other two voters are addresses nobody answers on.
        h.write("/etc/baton/baton.toml", f"""# written by tests/host/harness.py: a voter whose peers are down
[node]
name = "{h.name}"

[cluster]
listen = "{h.ip}:{PORT}"
voters = [
  {{ id = 1, name = "{h.name}", address = "{h.ip}:{PORT}" }},
  {{ id = 2, name = "absent-2", address = "{SUBNET}.98:{PORT}" }},
  {{ id = 3, name = "absent-3", address = "{SUBNET}.99:{PORT}" }},
]

[tls]
insecure = true

[updates]
source = "none"
""")
        h.write("/etc/systemd/system/baton.service.d/95-start-timeout.conf",
                f"# tests/host/harness.py check 8\n[Service]\nTimeoutStartSec={timeout_start}s\n")
        h.sh("systemctl daemon-reload && systemctl reset-failed baton; rm -rf /var/lib/baton/*", check=True)
        h.sh("systemctl start --no-block baton", check=True)
        wait = timeout_start * 2 + 6
        time.sleep(wait)
        props = h.show("ActiveState", "SubState", "NRestarts", "MainPID")
        status = status_line(h)
        expect(props["ActiveState"] == "activating" and props["NRestarts"] == "0",
               f"{h.name} {wait}s after start with TimeoutStartSec={timeout_start}s: "
               f"{' '.join(f'{k}={v}' for k, v in props.items())} (expected activating, NRestarts=0)")
        expect(status.startswith("voter starting for "),
               f"{h.name}: systemctl status shows {status!r}, expected 'voter starting for ...'")
        journal = h.out("journalctl --no-pager -b -u baton -o cat")
        expect("waiting for a majority" in journal, f"{h.name}: the journal does not say it waits for a majority")
        t = time.monotonic()
        p = h.sh("systemctl stop baton", timeout=60)
        dt = time.monotonic() - t
        after = h.show("ActiveState", "Result")
        h.sh("rm -f /etc/systemd/system/baton.service.d/95-start-timeout.conf && systemctl daemon-reload")
        expect(p.returncode == 0 and dt < 5,
               f"{h.name}: systemctl stop exited {p.returncode} after {dt:.1f}s (expected 0 within 5s)")
        expect(after["ActiveState"] == "inactive" and after["Result"] == "success",
               f"{h.name} after stop: {after} (expected inactive, success)")
        expect("SIGTERM while the voter was starting" in h.out("journalctl --no-pager -b -u baton -o cat"),
               f"{h.name}: the journal does not say the stop came while starting")
        return (f"still activating {wait}s after start (TimeoutStartSec={timeout_start}s), NRestarts=0, "
                f"STATUS {status!r}; systemctl stop took {dt:.1f}s, then inactive/success")


class RebootLoop(Exception):
    """The host rebooted again right after coming back (not a CheckFailed:
    wait_for must not retry it)."""


def disk_journal(h: Host, *args: str) -> list[dict]:
    """The host's persistent journal, read from its upper dir on this
    machine (works while the host is down or stuck)."""
    p = run(["journalctl", f"--directory={h.upper}/var/log/journal", "--no-pager", "-o", "json", *args],
            check=False, timeout=60)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def phases_by_boot(h: Host) -> list[tuple[str, list[str]]]:
    """BATON_PHASE of baton's journal entries, per boot, in order."""
    boots: dict[str, list[str]] = {}
    for e in disk_journal(h, "_SYSTEMD_UNIT=baton.service"):
        ph = boots.setdefault(e["_BOOT_ID"], [])
        if "BATON_PHASE" in e:
            ph.append(e["BATON_PHASE"])
    return list(boots.items())


def boot_id_hiding_settings(h: Host) -> list[str]:
    """Which sandbox settings of the installed unit, each alone, make a
    service see another boot id than the host's own (tried with systemd-run)."""
    own = h.boot_id()
    unit = h.out("cat /lib/systemd/system/baton.service")
    settings = re.findall(r"^((?:Protect|Private)\w+=\S+)\s*$", unit, re.M)
    hiding = []
    for setting in settings:
        p = h.sh(f"systemd-run --quiet --wait --pipe -p {shlex.quote(setting)} cat /proc/sys/kernel/random/boot_id",
                 timeout=20)
        if p.returncode == 0 and p.stdout.strip() != own:
            hiding.append(setting)
    return hiding


def service_boot_id(h: Host) -> str:
    """The boot id as baton.service sees it (through its own mount namespace)."""
    p = h.sh("cat /proc/$(systemctl show -p MainPID --value baton)/root/proc/sys/kernel/random/boot_id")
    return p.stdout.strip() if p.returncode == 0 else ""


def dedup(xs: list[str]) -> list[str]:
    return [x for i, x in enumerate(xs) if i == 0 or xs[i - 1] != x]


# --------------------------------------------------------------------------


def find_deb(arg: str | None) -> Path:
    if arg:
        deb = Path(arg).resolve()
        if not deb.is_file():
            raise SystemExit(f"harness: no such .deb: {deb}")
        return deb
    say("packaging/build.sh (builds dist/baton_<version>_amd64.deb)")
    t = time.monotonic()
    p = subprocess.run([str(REPO / "packaging/build.sh")], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    (LOGS / "build.log").write_text(p.stdout)
    if p.returncode != 0:
        sys.stdout.write(p.stdout[-4000:])
        raise SystemExit(f"harness: packaging/build.sh exited {p.returncode} (log: {LOGS / 'build.log'})")
    debs = sorted(glob.glob(str(REPO / "dist/baton_*_amd64.deb")), key=os.path.getmtime)
    if not debs:
        raise SystemExit("harness: packaging/build.sh made no dist/baton_*_amd64.deb")
    say(f"packaging/build.sh: {os.path.relpath(debs[-1], REPO)} ({time.monotonic() - t:.0f}s)")
    return Path(debs[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deb", help="the .deb to test (default: build it with packaging/build.sh)")
    ap.add_argument("--rebuild-rootfs", action="store_true", help=f"debootstrap {ROOTFS} again")
    ap.add_argument("--unit-dropin", action="append", default=[], metavar="LINE",
                    help="add LINE to a [Service] drop-in for baton.service on every host, e.g. "
                         "'ProtectProc=default' (to try a unit change without rebuilding the .deb; "
                         "the results are then not those of the unit as shipped)")
    ap.add_argument("--hold", action="store_true",
                    help="after the checks, keep the hosts running until Enter or Ctrl-C (for a look inside)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("harness: must run as root", file=sys.stderr)
        return 2
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"harness: another run holds {LOCK}", file=sys.stderr)
        return 2

    if LOGS.exists():
        shutil.rmtree(LOGS)
    LOGS.mkdir(parents=True)
    say(f"logs: {LOGS}; systemd is {'' if SYSTEMD_IS_PID1 else 'not '}PID 1 here "
        f"({'a scope per host' if SYSTEMD_IS_PID1 else 'own cgroups per host under ' + CGROUP})")

    # Ctrl-C and SIGTERM unwind through the finally below.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT explicitly: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    hosts: dict[int, Host] = {}
    suite = None
    try:
        stale = kill_leftovers()
        delete_network()
        remove_work()
        if stale:
            say(f"killed {len(stale)} leftover processes of an earlier run")
        deb = find_deb(args.deb)
        ensure_rootfs(args.rebuild_rootfs)

        t = time.monotonic()
        (WORK / "share").mkdir(parents=True)
        shutil.copy2(deb, WORK / "share" / deb.name)
        setup_network()
        hosts = {n: Host(n) for n in (*VOTERS, CLIENT, BAD)}
        for h in hosts.values():
            h.prepare()
            h.start()
        for h in hosts.values():
            h.wait_booted()
        say(f"booted {', '.join(f'{h.name} ({h.ip})' for h in hosts.values())} in {time.monotonic() - t:.1f}s")

        suite = Suite(hosts, deb)
        suite.install_all(args.unit_dropin)
        suite.check("1 is-active and READY handshake", suite.ready_handshake)
        suite.check("2 systemctl status shows STATUS=", suite.status_text)
        suite.check("3 journal: BATON_* fields, SYSLOG_IDENTIFIER=baton", suite.journal_fields)
        suite.check("4 watchdog restarts a stopped main loop", suite.watchdog)
        suite.check("5 3-voter cluster forms, elects, grants", suite.cluster)
        suite.check("6 reboot through logind, agent finishes the roll", suite.reboot)
        suite.check("7 bad config: fails fast, no restart loop", suite.bad_config)
        suite.check("8 a voter waiting for a majority keeps starting and stops at once", suite.waiting_voter)
        if args.hold:
            hold(hosts)
    except KeyboardInterrupt as e:
        say(f"interrupted ({e or 'SIGINT'}): cleaning up")
        if suite is None:
            suite = Suite(hosts, Path("-"))
        suite.results.append(("run interrupted", False, 0, ""))
    except (Exception, SystemExit) as e:
        msg = str(e) if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
        print(f"FAIL setup: {msg}", flush=True)
        if suite is None:
            suite = Suite(hosts, Path("-"))
        suite.results.append(("setup", False, 0, msg))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        teardown(hosts)

    if args.unit_dropin:
        say(f"NOTE: baton.service was changed by --unit-dropin: {'; '.join(args.unit_dropin)}")
    passed = sum(1 for r in suite.results if r[1])
    failed = len(suite.results) - passed
    say(f"total {time.monotonic() - T0:.0f}s; logs in {LOGS}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def hold(hosts: dict[int, Host]) -> None:
    for h in hosts.values():
        with contextlib.suppress(CheckFailed):
            print(f"  {h.name} ({h.ip}): nsenter -t {h.container_pid(5)} -a env -i {' '.join(GUEST_ENV[:2])} bash")
    print("hosts are up; press Enter (or Ctrl-C) to clean up", flush=True)
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()


def teardown(hosts: dict[int, Host]) -> None:
    t = time.monotonic()
    for h in hosts.values():
        h.send_sigterm()
    unclean = [h.name for h in hosts.values() if not h.wait_stopped(30)]
    for h in hosts.values():
        # All boots of each host, for a look after the run.
        with contextlib.suppress(Exception):
            p = run(["journalctl", f"--directory={h.upper}/var/log/journal", "--no-pager", "-o", "short-precise"],
                    check=False, timeout=60)
            (LOGS / f"{h.name}-journal.txt").write_text(p.stdout)
    killed = kill_leftovers()
    for h in hosts.values():
        if h.proc is not None:
            with contextlib.suppress(Exception):
                h.proc.kill()
                h.proc.wait(5)
    delete_network()
    remove_work()
    left = leftovers_report()
    say(f"cleanup in {time.monotonic() - t:.1f}s: "
        + ("nothing left" if not left else "LEFT BEHIND: " + ", ".join(left))
        + (f" (killed after no clean shutdown: {', '.join(unclean)}; {len(killed)} processes)" if unclean else ""))


if __name__ == "__main__":
    sys.exit(main())
