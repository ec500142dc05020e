"""Real libvirtd + QEMU (TCG) instances for the VirtualDomain tests.

Each instance runs libvirtd and virtlogd without systemd, in its own network
namespace ``pyha-vd-<name>`` and a private mount + UTS namespace held by an
"anchor" process.  Private copies of /etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt live under
``/tmp/pyha-virt-<name>``, so the host's libvirt (and its socket) is never
touched and two instances can live-migrate between each other.  The agent
reaches an instance through its unix socket, which /tmp makes visible from
every namespace.

Guests (built once, cached under /tmp/pyha-virt-guest2):

* ``noos``: no disk, no kernel; SeaBIOS idles and ignores ACPI.
* ``acpi``: the installed Debian kernel and a busybox initrd whose acpid
  powers off on the power button; it prints ``PYHAGUEST: up`` on its serial
  console once acpid listens.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

GUEST_DIR = Path("/tmp/pyha-virt-guest2")
CAPS_CACHE = Path("/tmp/pyha-virt-capscache")
DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
        "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}


def _sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Instance:
    def __init__(self, name: str, host_uuid: str) -> None:
        self.name = name
        self.host_uuid = host_uuid
        self.dir = Path(f"/tmp/pyha-virt-{name}")
        self.netns = f"pyha-vd-{name}"
        self.anchor: subprocess.Popen | None = None
        self.lock_fd = -1  # held by claim() until down()

    @property
    def socket(self) -> str:
        return str(self.dir / "run" / "libvirt-sock")

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    def pid(self, daemon: str) -> int | None:
        try:
            return int((self.dir / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def in_ns(self, *argv: str, check: bool = True, timeout: float = 60
              ) -> subprocess.CompletedProcess:
        assert self.anchor is not None
        return _sh("nsenter", "-t", str(self.anchor.pid), "-m", "-u", "-n", "--", *argv,
                   check=check, timeout=timeout)

    def virsh(self, *args: str, check: bool = True, timeout: float = 60
              ) -> subprocess.CompletedProcess:
        return _sh("virsh", "-c", self.uri, *args, check=check, timeout=timeout)

    def up(self) -> None:
        self.down()  # leftovers of an interrupted run
        for sub in ("run", "cache", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/libvirt", self.dir / "etc", symlinks=True)
        shutil.copytree("/var/lib/libvirt", self.dir / "lib", symlinks=True)
        if CAPS_CACHE.is_dir():
            shutil.copytree(CAPS_CACHE, self.dir / "cache", dirs_exist_ok=True)
        for auto in (self.dir / "etc/qemu/networks/autostart").glob("*.xml"):
            auto.unlink()
        with open(self.dir / "etc/libvirtd.conf", "a") as conf:
            conf.write(f'\nhost_uuid = "{self.host_uuid}"\nunix_sock_group = "root"\n'
                       f'unix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\n'
                       f'log_outputs = "3:file:{self.dir}/log/libvirtd.log"\n')
        with open(self.dir / "etc/qemu.conf", "a") as conf:
            conf.write('\ncgroup_controllers = [ ]\nsecurity_driver = "none"\nuser = "root"\n'
                       'group = "root"\nstdio_handler = "logd"\n'
                       'migration_port_min = 49152\nmigration_port_max = 49215\n')
        Path("/run/libvirt").mkdir(exist_ok=True)  # the mount point inside the namespace
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        binds = " && ".join(f"mount --bind {self.dir}/{k} {v}" for k, v in DIRS.items())
        self.anchor = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "--", "sh", "-c",
             f"{binds} && hostname pyha-{self.name} && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (self.dir / "anchor.pid").write_text(str(self.anchor.pid))
        for _ in range(100):
            res = self.in_ns("hostname", check=False)
            if res.stdout.strip() == f"pyha-{self.name}":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"anchor namespace for {self.name} did not come up")
        self.in_ns("virtlogd", "-d", "-p", str(self.dir / "virtlogd.pid"))
        self.in_ns("libvirtd", "-d", "-p", str(self.dir / "libvirtd.pid"))
        for _ in range(300):
            # Without a capabilities cache (a fresh machine: nothing in /tmp yet)
            # libvirtd first probes QEMU, which can take minutes on a loaded machine.
            if (os.path.exists(self.socket)
                    and self.virsh("version", check=False, timeout=300).returncode == 0):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"libvirtd {self.name} did not answer")
        if not CAPS_CACHE.is_dir():
            # The first capabilities probe costs ~8 s; later instances reuse it.
            self.virsh("capabilities", check=False)
            self.virsh("domcapabilities", "--virttype", "qemu", check=False)
            shutil.copytree(self.dir / "cache", CAPS_CACHE, dirs_exist_ok=True)

    def resume_daemon(self) -> None:
        pid = self.pid("libvirtd")
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def down(self) -> None:
        """Kill everything this instance started; safe to call twice or after a crash."""
        self.resume_daemon() if self.dir.exists() else None
        qemu_pids = []
        for pidfile in (self.dir / "run" / "qemu").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                qemu_pids.append(int(pidfile.read_text().strip()))
        for daemon in ("libvirtd", "virtlogd"):  # throwaway daemons: no need to be gentle
            pid = self.pid(daemon)
            if pid:
                _kill_wait(pid, signal.SIGKILL)
        for pid in qemu_pids:
            _kill_wait(pid, signal.SIGKILL)
        anchor_pid = None
        if self.anchor is not None:
            anchor_pid = self.anchor.pid
        else:
            with contextlib.suppress(OSError, ValueError):
                anchor_pid = int((self.dir / "anchor.pid").read_text())
        if anchor_pid:
            _kill_wait(anchor_pid, signal.SIGKILL)
            if self.anchor is not None:
                with contextlib.suppress(Exception):
                    self.anchor.wait(5)
        self.anchor = None
        _sh("ip", "netns", "del", self.netns, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def release(self) -> None:
        """down(), then give the name back."""
        try:
            self.down()
        finally:
            if self.lock_fd >= 0:
                os.close(self.lock_fd)
                self.lock_fd = -1


LOCKS = Path("/tmp/pyha-virt-locks")


def claim(prefix: str, count: int) -> list[Instance]:
    """``count`` instance names ``<prefix><n>`` that no other test run holds.

    Each name is held with an ``flock`` until :meth:`Instance.down`, so runs
    in parallel on this machine (another engineer's suite, a bench) never
    tear down each other's libvirtd.
    """
    import fcntl
    import itertools

    LOCKS.mkdir(exist_ok=True)
    found: list[Instance] = []
    for n in itertools.count(1):
        name = f"{prefix}{n}"
        fd = os.open(LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        inst = Instance(name, f"5a1e0001-0000-4000-8000-{n:012x}")
        inst.lock_fd = fd
        found.append(inst)
        if len(found) == count:
            return found
    raise AssertionError("unreachable")


def alive(pid: int) -> bool:
    """Running, not a zombie (daemonized processes are reaped late, if ever, here)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_wait(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def veth(a: Instance, b: Instance, ip_a: str, ip_b: str) -> None:
    """A veth pair between two instances' namespaces (created inside them, not on the host)."""
    _sh("ip", "-n", a.netns, "link", "add", "pyhavd0", "type", "veth", "peer", "name",
        "pyhavd1", "netns", b.netns)
    for inst, dev, ip in ((a, "pyhavd0", ip_a), (b, "pyhavd1", ip_b)):
        _sh("ip", "-n", inst.netns, "addr", "add", ip + "/24", "dev", dev)
        _sh("ip", "-n", inst.netns, "link", "set", dev, "up")


# -- guests -----------------------------------------------------------------

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
insmod /lib/evdev.ko; insmod /lib/button.ko
acpid -f -c /etc/acpi -l /tmp/acpid.log &
sleep 0.3
echo "PYHAGUEST: up"
while :; do sleep 3600; done
"""
POWER = """#!/bin/sh
echo "PYHAGUEST: ACPI power button"
poweroff -f
"""


def build_guest() -> tuple[Path, Path]:
    """The installed Debian kernel plus a busybox-static initrd (cached between runs)."""
    kernel, initrd = GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.gz"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    GUEST_DIR.mkdir(parents=True, exist_ok=True)
    release = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*"))[-1]
    mods = Path("/lib/modules") / release / "kernel/drivers"
    root = GUEST_DIR / "root"
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("bin", "sbin", "proc", "sys", "dev", "lib", "etc/acpi/PWRF", "tmp"):
        (root / sub).mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin/busybox")
    for ko in (mods / "acpi/button.ko", mods / "input/evdev.ko"):
        shutil.copy(ko, root / "lib")
    (root / "init").write_text(INIT)
    (root / "etc/acpi/PWRF/00000080").write_text(POWER)
    (root / "init").chmod(0o755)
    (root / "etc/acpi/PWRF/00000080").chmod(0o755)
    files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                          check=True, capture_output=True).stdout
    tmp = GUEST_DIR / f".initrd.{os.getpid()}"
    tmp.write_bytes(gzip.compress(cpio, 1))
    tmp.rename(initrd)
    tmp_kernel = GUEST_DIR / f".vmlinuz.{os.getpid()}"
    tmp_kernel.write_bytes(_uncompressed_kernel(Path(f"/boot/vmlinuz-{release}")))
    tmp_kernel.rename(kernel)
    shutil.rmtree(root, ignore_errors=True)
    return kernel, initrd


def _uncompressed_kernel(vmlinuz: Path) -> bytes:
    """The ELF vmlinux inside Debian's xz bzImage, else the bzImage itself.

    QEMU boots the ELF directly through its PVH entry point (CONFIG_PVH), which
    skips the in-guest xz decompression: under TCG that halves the boot time.
    """
    import lzma

    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start >= 0:
        try:
            elf = lzma.LZMADecompressor().decompress(data[start:])
            if elf[:4] == b"\x7fELF":
                return elf
        except lzma.LZMAError:
            pass
    return data


def domain_xml(name: str, kind: str, console: Path, uuid: str | None = None) -> str:
    if kind == "acpi":
        kernel, initrd = build_guest()
        os_xml = (f"<type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel>"
                  f"<initrd>{initrd}</initrd><cmdline>console=ttyS0 quiet</cmdline>")
    else:
        os_xml = "<type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/>"
    uuid_xml = f"<uuid>{uuid}</uuid>" if uuid else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>{uuid_xml}
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os>{os_xml}</os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{console}'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def wait_console(console: Path, text: str = "PYHAGUEST: up", timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            if text in console.read_text(errors="replace"):
                return
        time.sleep(0.2)
    raise TimeoutError(f"guest console {console} never showed {text!r}")
