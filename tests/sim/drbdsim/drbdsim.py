#!/usr/bin/python3 -IS
"""A stand-in for the DRBD kernel module, reached through the drbdsetup/drbdmeta CLI.

Only the kernel side is simulated.  The real ``/usr/sbin/drbdadm`` parses the
configuration and plans the commands; it finds ``drbdsetup``, ``drbdsetup-84``,
``drbdmeta``, ``modinfo`` and ``modprobe`` through PATH, and this directory
puts these names (symlinks to this file) first.  Every node's kernel is a JSON
file; the peer is modelled by reading the other node's file, so two nodes that
both ``connect`` are Connected, and each sees the other's role and disk.

Environment (shared with drbdadm where possible):

``PYHA_DRBDSIM_DIR``            base directory (all nodes' state)
``__DRBD_NODE__``               which node this call runs on (drbdadm honours it too)
``DRBD_DRIVER_VERSION_OVERRIDE`` module version that ``modprobe drbd`` "loads"

Per node ``<base>/<node>/``: ``kernel.json`` (lost on "reboot"), ``meta.json``
(on-disk metadata: disk state per resource/volume, survives ``down``),
``root/proc/drbd`` and ``root/dev/drbdN`` (what the agent sees through
``PYHA_KERNEL_ROOT``), ``calls.log``.  Shared faults in ``<base>/faults.json``:
``cut`` (list of resources whose network is down: lost peer), ``split_brain``
(resources whose next handshake detects split brain), ``resync`` (resource →
percent done; 100 or absent with ``instant_resync`` completes it).

Return codes and messages follow drbdsetup: 10 for configuration failures,
11 for refused state changes, 17 for "Need access to UpToDate data",
20 for a missing module.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time

BASE = os.environ.get("PYHA_DRBDSIM_DIR", "")
NODE = os.environ.get("__DRBD_NODE__", "")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _load(path: str, default: Any) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def _save(path: str, data: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def node_dir(node: str) -> str:
    return os.path.join(BASE, node)


def kernel(node: str) -> dict:
    return _load(os.path.join(node_dir(node), "kernel.json"), {"loaded": None, "res": {}})


def meta(node: str) -> dict:
    return _load(os.path.join(node_dir(node), "meta.json"), {})


def faults() -> dict:
    return _load(os.path.join(BASE, "faults.json"), {})


def save_faults(data: dict) -> None:
    _save(os.path.join(BASE, "faults.json"), data)


def nodes() -> list[str]:
    return sorted(d for d in os.listdir(BASE) if os.path.isdir(os.path.join(BASE, d)))


def set_disk(node: str, res: str, state: str, vol: int = 0) -> None:
    """Set a node's on-disk state (e.g. Inconsistent) and, if attached, its kernel disk."""
    os.makedirs(node_dir(node), exist_ok=True)
    m = meta(node)
    m.setdefault(res, {})[str(vol)] = state
    _save(os.path.join(node_dir(node), "meta.json"), m)
    k = kernel(node)
    v = k["res"].get(res, {}).get("vols", {}).get(str(vol))
    if v is not None and v["disk"] != "Diskless":
        v["disk"] = state
        _save(os.path.join(node_dir(node), "kernel.json"), k)
        write_proc(node, k)


def fail_disk(node: str, res: str, vol: int = 0) -> None:
    """An I/O error on the backing device with on-io-error detach: the disk is gone."""
    k = kernel(node)
    v = k["res"][res]["vols"][str(vol)]
    v["disk"] = "Diskless"
    v["failed"] = True
    _save(os.path.join(node_dir(node), "kernel.json"), k)
    write_proc(node, k)


# -- the model ------------------------------------------------------------------


def peer_of(node: str, res: str) -> str | None:
    for other in nodes():
        if other != node and res in kernel(other)["res"]:
            return other
    return None


def link(node: str, res: str) -> tuple[str, str | None, dict | None]:
    """(connection state, peer node, peer resource) as ``node`` sees it."""
    mine = kernel(node)["res"].get(res)
    if mine is None or not mine.get("connect"):
        return "StandAlone", None, None
    if res in faults().get("sb_dropped", []):
        return "StandAlone", None, None
    peer = peer_of(node, res)
    theirs = kernel(peer)["res"].get(res) if peer else None
    if theirs is None or not theirs.get("connect") or res in faults().get("cut", []):
        return "Connecting", None, None
    return "Connected", peer, theirs


def resync(node: str, res: str, vol: str) -> tuple[str, str, float | None]:
    """(replication state, peer disk, percent done) for an established connection."""
    conn, peer, theirs = link(node, res)
    if conn != "Connected" or theirs is None:
        return "Off", "DUnknown", None
    mine = kernel(node)["res"][res]["vols"].get(vol, {})
    pv = theirs["vols"].get(vol, {})
    a, b = mine.get("disk", "Diskless"), pv.get("disk", "Diskless")
    behind = ("Inconsistent", "Outdated")
    if a == "UpToDate" and b in behind:
        return "SyncSource", "Inconsistent", faults().get("resync", {}).get(res, 0.0)
    if b == "UpToDate" and a in behind:
        return "SyncTarget", "UpToDate", faults().get("resync", {}).get(res, 0.0)
    return "Established", b, None


def local_disk(node: str, res: str, vol: str) -> str:
    d = kernel(node)["res"][res]["vols"][vol]["disk"]
    if d in ("Inconsistent", "Outdated") and resync(node, res, vol)[0] == "SyncTarget":
        return "Inconsistent"
    return d


# -- output formats ----------------------------------------------------------------


def events2(res_filter: str | None, stats: bool) -> str:
    k = kernel(NODE)
    out = []
    for res, r in sorted(k["res"].items()):
        if res_filter and res_filter not in (res, "all"):
            continue
        conn, peer, theirs = link(NODE, res)
        out.append(f"exists resource name:{res} role:{r['role']} suspended:no "
                   f"force-io-failures:no may_promote:no promotion_score:0")
        for pid, p in sorted(r.get("peers", {}).items()):
            prole = theirs["role"] if theirs else "Unknown"
            out.append(f"exists connection name:{res} peer-node-id:{pid} conn-name:{p['name']} "
                       f"connection:{conn} role:{prole}")
        for vol, v in sorted(r["vols"].items()):
            quorum = "no" if res in faults().get("no_quorum", []) else "yes"
            line = (f"exists device name:{res} volume:{vol} minor:{v['minor']} "
                    f"backing_dev:{v.get('backing') or 'none'} disk:{local_disk(NODE, res, vol)} "
                    f"client:no open:no quorum:{quorum}")
            out.append(line)
            for pid, p in sorted(r.get("peers", {}).items()):
                repl, pdisk, done = resync(NODE, res, vol)
                line = (f"exists peer-device name:{res} peer-node-id:{pid} conn-name:{p['name']} "
                        f"volume:{vol} replication:{repl} peer-disk:{pdisk} peer-client:no "
                        f"resync-suspended:no")
                if stats:
                    line += " received:0 sent:0 out-of-sync:0 pending:0 unacked:0"
                    if done is not None:
                        line += f" done:{done:.2f}"
                out.append(line)
    out.append("exists -")
    return "\n".join(out) + "\n"


def status(res_filter: str | None) -> str:
    k = kernel(NODE)
    out = []
    for res, r in sorted(k["res"].items()):
        if res_filter and res_filter not in (res, "all"):
            continue
        conn, peer, theirs = link(NODE, res)
        out.append(f"{res} role:{r['role']}")
        for vol, _v in sorted(r["vols"].items()):
            prefix = f"volume:{vol} " if len(r["vols"]) > 1 else ""
            out.append(f"  {prefix}disk:{local_disk(NODE, res, vol)}")
        for _pid, p in sorted(r.get("peers", {}).items()):
            if conn != "Connected":
                out.append(f"  {p['name']} connection:{conn}")
                continue
            out.append(f"  {p['name']} role:{theirs['role'] if theirs else 'Unknown'}")
            for vol in sorted(r["vols"]):
                repl, pdisk, done = resync(NODE, res, vol)
                prefix = f"volume:{vol} " if len(r["vols"]) > 1 else ""
                extra = f"replication:{repl} " if repl != "Established" else ""
                tail = f" done:{done:.2f}" if done is not None else ""
                out.append(f"    {prefix}{extra}peer-disk:{pdisk}{tail}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def sh_status(res: str | None) -> str:
    """8.4's shell-assignment block per volume (what linbit's agent evals)."""
    k = kernel(NODE)
    out = []
    for name, r in sorted(k["res"].items()):
        if res and name != res:
            continue
        conn, _peer, theirs = link(NODE, name)
        for vol, v in sorted(r["vols"].items()):
            repl, pdisk, done = resync(NODE, name, vol)
            cs = {"StandAlone": "StandAlone", "Connecting": "WFConnection"}.get(conn, "Connected")
            if repl in ("SyncSource", "SyncTarget"):
                cs = repl
            out += [f"_minor={v['minor']}", f"_res_name={name}", f"_volume={vol}",
                    "_known=Configured", f"_cstate={cs}", f"_role={r['role']}",
                    f"_peer={theirs['role'] if theirs else 'Unknown'}",
                    f"_disk={local_disk(NODE, name, vol)}", f"_pdsk={pdisk}",
                    "_flags_susp=", "_flags_aftr_isp=", "_flags_peer_isp=", "_flags_user_isp=",
                    f"_resynced_percent={'' if done is None else done}", "_sh_status_process"]
    return "\n".join(out) + ("\n" if out else "")


def show(res_filter: str | None, v84: bool) -> str:
    """The running configuration in drbdsetup show syntax, so drbdadm adjust can diff."""
    k = kernel(NODE)
    out = []
    for res, r in sorted(k["res"].items()):
        if res_filter and res_filter not in (res, "all"):
            continue
        head = f"resource {res} {{" if v84 else f'resource "{res}" {{'
        out += [head, "    options {", "    }"]
        vols = []
        for vol, v in sorted(r["vols"].items()):
            vols += [f"        volume {vol} {{", f"            device\t\t\tminor {v['minor']};"]
            if v.get("backing"):
                vols += [f'            disk\t\t\t"{v["backing"]}";',
                         f"            meta-disk\t\t\t{v.get('meta') or 'internal'};",
                         "            disk {", "            }"]
            vols.append("        }")
        if v84:
            if r.get("connect"):
                out += ["    net {", "    }", "    _remote_host {",
                        f"        address\t\t\tipv4 {r['connect'][1]};", "    }"]
            out += ["    _this_host {"]
            if r.get("connect"):
                out.append(f"        address\t\t\tipv4 {r['connect'][0]};")
            out += vols + ["    }"]
        else:
            out += ["    _this_host {", f"        node-id\t\t\t{r['node_id']};"] + vols + ["    }"]
            for pid, p in sorted(r.get("peers", {}).items()):
                out += ["    connection {", f"        _peer_node_id {pid};"]
                if p.get("path"):
                    out += ["        path {",
                            f"            _this_host ipv4 {p['path'][0]};",
                            f"            _remote_host ipv4 {p['path'][1]};", "        }"]
                out += ["        net {", f'            _name\t\t\t"{p["name"]}";', "        }"]
                if not r.get("connect") or res in faults().get("sb_dropped", []):
                    out.append("        _is_standalone;")  # drbdadm adjust then connects
                out.append("    }")
        out.append("}")
        out.append("")
    return "\n".join(out)


def write_proc(node: str, k: dict) -> None:
    root = os.path.join(node_dir(node), "root")
    proc = os.path.join(root, "proc", "drbd")
    os.makedirs(os.path.dirname(proc), exist_ok=True)
    if not k["loaded"]:
        try:
            os.unlink(proc)
        except FileNotFoundError:
            pass
        return
    ver = k["loaded"]
    if not ver.startswith("8."):
        text = (f"version: {ver} (api:2/proto:86-122)\n"
                "GIT-hash: 0000000000000000000000000000000000000000 build by pyha-sim\n"
                f"Transports (api:18): tcp ({ver})\n")
    else:
        lines = [f"version: {ver} (api:1/proto:86-101)", "srcversion: 00000000000000000000000"]
        minors = []
        for res, r in k["res"].items():
            for vol, v in r["vols"].items():
                minors.append((int(v["minor"]), res, vol, r))
        for minor, res, vol, r in sorted(minors):
            conn, peer, theirs = link(node, res)
            repl, pdisk, done = resync(node, res, vol)
            cs = {"StandAlone": "StandAlone", "Connecting": "WFConnection"}.get(conn, "Connected")
            if repl in ("SyncSource", "SyncTarget"):
                cs = repl
            prole = theirs["role"] if theirs else "Unknown"
            disk = local_disk(node, res, vol)
            proto = "C" if r.get("connect") else " "
            lines.append(f"{minor:2d}: cs:{cs} ro:{r['role']}/{prole} ds:{disk}/{pdisk} "
                         f"{proto} r-----")
            lines.append("    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0")
            if done is not None:
                bar = "=" * int(done / 5)
                lines.append(f"\t[{bar}>{'.' * (19 - len(bar))}] sync'ed: {done:.1f}% "
                             "(1024/2048)K")
                lines.append("\tfinish: 0:00:10 speed: 1,024 (1,024) K/sec")
        text = "\n".join(lines) + "\n"
    tmp = proc + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, proc)


def refresh_all() -> None:
    """Peers' /proc/drbd depend on this node's state (8.4 shows the peer there)."""
    for n in nodes():
        write_proc(n, kernel(n))


# -- commands ------------------------------------------------------------------------


def die(rc: int, msg: str) -> int:
    sys.stderr.write(msg + "\n")
    return rc


def res_of_minor(k: dict, minor: str) -> tuple[str, str] | None:
    for res, r in k["res"].items():
        for vol, v in r["vols"].items():
            if str(v["minor"]) == minor:
                return res, vol
    return None


def devnode(minor: int, create: bool) -> None:
    path = os.path.join(node_dir(NODE), "root", "dev", f"drbd{minor}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if create:
        if not os.path.exists(path):
            os.mknod(path, 0o660 | 0o060000, os.makedev(147, minor))
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def drbdsetup(argv: list[str], v84: bool) -> int:
    args = [a for a in argv if not a.startswith("-")]
    opts = [a for a in argv if a.startswith("-")]
    if not args:
        return die(20, "USAGE: drbdsetup command {arguments} [options]")
    cmd, rest = args[0], args[1:]
    k = kernel(NODE)
    if not k["loaded"]:
        # The real drbdsetup tries "modprobe drbd" itself and gives up like this.
        return die(20, "Failed to modprobe drbd (No such file or directory)")
    first = rest[0] if rest else None
    r = k["res"].get(first) if first else None
    if cmd == "events2":
        sys.stdout.write(events2(first, "--statistics" in opts))
        return 0
    if cmd == "status":
        if first and first != "all" and r is None:
            return die(10, f"{first}: No such resource")
        sys.stdout.write(status(first))
        return 0
    if cmd == "show":
        if first and first != "all" and r is None:
            return die(10, f"{first}: No such resource")
        sys.stdout.write(show(first, v84))
        return 0
    if cmd in ("role", "cstate"):
        if r is None and first and res_of_minor(k, first):  # 8.4 addresses minors
            first = res_of_minor(k, first)[0]  # type: ignore[index]
            r = k["res"][first]
        if r is None:
            return die(10, f"{first}: No such resource")
        if cmd == "role":
            theirs = link(NODE, first)[2]
            print(f"{r['role']}/{theirs['role'] if theirs else 'Unknown'}" if v84 else r["role"])
        else:
            print(link(NODE, first)[0])
        return 0
    if cmd == "dstate":
        found = res_of_minor(k, first or "")
        if not found:
            return die(10, f"{first}: Failure: (127) Device minor not allocated")
        print(f"{local_disk(NODE, *found)}/{resync(NODE, *found)[1]}")
        return 0
    if cmd == "sh-status":
        sys.stdout.write(sh_status(first))
        return 0
    changed = True
    if cmd == "new-resource":
        if r is not None:
            return die(10, f"{first}: Failure: (161) Resource already exists")
        k["res"][first] = {"role": "Secondary", "vols": {}, "peers": {}, "connect": None,
                           "node_id": rest[1] if len(rest) > 1 else "0"}
    elif cmd == "new-minor":
        if r is None:
            return die(10, f"{first}: No such resource")
        minor, vol = rest[1], rest[2]
        if res_of_minor(k, minor):
            return die(10, f"{minor}: Failure: (161) Minor or volume exists already")
        r["vols"][vol] = {"minor": int(minor), "disk": "Diskless", "backing": None}
        devnode(int(minor), True)
    elif cmd == "new-peer":
        name = next((o.split("=", 1)[1] for o in opts if o.startswith("--_name=")), rest[1])
        r["peers"][rest[1]] = {"name": name, "path": None}
    elif cmd == "new-path":
        r["peers"][rest[1]]["path"] = [rest[2].split(":", 1)[1], rest[3].split(":", 1)[1]]
    elif cmd == "connect":
        if r is None:
            return die(10, f"{first}: No such resource")
        if v84:
            r["connect"] = [rest[1].split(":", 1)[1], rest[2].split(":", 1)[1]]
        else:
            r["connect"] = True
        f = faults()
        if first in f.get("split_brain", []):
            # The handshake finds diverging data: "Split-Brain detected but unresolved,
            # dropping connection!"  Both sides end StandAlone and stay there.
            f.setdefault("sb_dropped", []).append(first)
            save_faults(f)
    elif cmd in ("disconnect", "del-peer"):
        if r is not None:
            r["connect"] = None
    elif cmd == "attach":
        found = res_of_minor(k, rest[0])
        if not found:
            return die(10, f"{rest[0]}: Failure: (127) Device minor not allocated")
        res, vol = found
        disk = meta(NODE).get(res, {}).get(vol, "UpToDate")
        m = meta(NODE)
        m.setdefault("_minors", {})[rest[0]] = [res, vol]
        _save(os.path.join(node_dir(NODE), "meta.json"), m)
        k["res"][res]["vols"][vol].update(disk=disk, backing=rest[1], meta=rest[3] if len(rest) > 3
                                          else "internal", failed=False)
    elif cmd == "detach":
        found = res_of_minor(k, rest[0])
        if found:
            k["res"][found[0]]["vols"][found[1]]["disk"] = "Diskless"
    elif cmd in ("primary", "secondary"):
        if v84:
            found = res_of_minor(k, rest[0]) if rest else None
            res = found[0] if found else (first or "")
            objname = rest[0] if rest else ""
        else:
            res, objname = first or "", first or ""
        r = k["res"].get(res)
        if r is None:
            return die(10, f"{objname}: No such resource")
        if cmd == "primary":
            conn, peer, theirs = link(NODE, res)
            if theirs and theirs["role"] == "Primary":
                return die(11, f"{objname}: State change failed: (-1) Multiple primaries not "
                               "allowed by config")
            force = "--force" in opts or "--overwrite-data-of-peer" in opts
            for vol in r["vols"]:
                mine = local_disk(NODE, res, vol)
                peer_ok = resync(NODE, res, vol)[1] == "UpToDate"
                if mine == "UpToDate" or peer_ok or (force and mine != "Diskless"):
                    continue
                return die(17, f"{objname}: State change failed: (-2) Need access to UpToDate "
                               "data")
            if force:
                for vol, v in r["vols"].items():
                    v["disk"] = "UpToDate"
                    _meta_set(res, vol, "UpToDate")
            r["role"] = "Primary"
        else:
            if res in faults().get("held_open", []):
                return die(11, f"{objname}: State change failed: (-12) Device is held open by "
                               "someone")
            r["role"] = "Secondary"
    elif cmd == "down":
        if r is not None:
            if r["role"] == "Primary" and res_held(first):
                return die(11, f"{first}: State change failed: (-12) Device is held open by "
                               "someone")
            for v in r["vols"].values():
                devnode(int(v["minor"]), False)
            del k["res"][first]
            f = faults()
            if first in f.get("sb_dropped", []):
                f["sb_dropped"].remove(first)
                save_faults(f)
    elif cmd == "outdate":
        # 9: "outdate <res> <vol>"; 8.4: "outdate <minor>"
        found = (first, rest[1]) if r is not None and len(rest) > 1 else res_of_minor(k, rest[0])
        if not found:
            return die(10, f"{rest[0]}: Failure: (127) Device minor not allocated")
        res, vol = found
        if k["res"][res]["role"] == "Primary":
            return die(11, f"{rest[0]}: State change failed: (-2) Need access to UpToDate data")
        if link(NODE, res)[0] == "Connected":
            return die(11, f"{rest[0]}: State change failed: (-15) Refusing to be Outdated while "
                           "Connected")
        v = k["res"][res]["vols"][vol]
        if v["disk"] in ("UpToDate", "Consistent"):
            v["disk"] = "Outdated"
            _meta_set(res, vol, "Outdated")
    elif cmd in ("wait-connect-resource", "wait-connect-volume", "wait-connect-connection",
                 "wait-connect", "wait-sync", "wait-sync-resource"):
        changed = False
    elif cmd in ("resize", "check-resize", "resource-options", "peer-device-options",
                 "net-options", "disk-options", "new-current-uuid", "invalidate"):
        changed = False
    elif cmd == "del-minor":
        found = res_of_minor(k, rest[0])
        if found:
            del k["res"][found[0]]["vols"][found[1]]
            devnode(int(rest[0]), False)
    elif cmd == "del-resource":
        k["res"].pop(first, None)
    else:
        return die(20, f"drbdsetup (pyha simulator): unhandled '{' '.join(argv)}'")
    if changed:
        _save(os.path.join(node_dir(NODE), "kernel.json"), k)
        refresh_all()
    return 0


def res_held(res: str | None) -> bool:
    return bool(res) and res in faults().get("held_open", [])


def _meta_set(res: str, vol: str, state: str) -> None:
    m = meta(NODE)
    m.setdefault(res, {})[vol] = state
    _save(os.path.join(node_dir(NODE), "meta.json"), m)


def drbdmeta(argv: list[str]) -> int:
    """Only ``outdate`` of a detached device matters (drbdadm outdate on a stopped resource)."""
    if argv and argv[-1] == "outdate":
        if res_of_minor(kernel(NODE), argv[0]):
            return die(20, f"Device '{argv[0]}' is configured!")
        found = meta(NODE).get("_minors", {}).get(argv[0])
        if found and meta(NODE).get(found[0], {}).get(found[1], "UpToDate") in ("UpToDate",
                                                                          "Consistent"):
            _meta_set(found[0], found[1], "Outdated")
    return 0


def modprobe(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-") and "=" not in a]
    remove = any(a in ("-r", "--remove") or (a.startswith("-") and not a.startswith("--")
                                               and "r" in a) for a in argv)
    if not names or names[0] != "drbd":
        return die(1, f"modprobe: FATAL: Module {names[0] if names else '?'} not found in "
                      "directory /lib/modules/pyha-sim")
    if faults().get("no_module"):
        return die(1, "modprobe: FATAL: Module drbd not found in directory /lib/modules/pyha-sim")
    k = kernel(NODE)
    if remove:
        if k["res"]:
            return die(1, "modprobe: FATAL: Module drbd is in use.")
        k["loaded"] = None
    elif not k["loaded"]:
        k["loaded"] = os.environ.get("DRBD_DRIVER_VERSION_OVERRIDE") or "9.2.8"
    _save(os.path.join(node_dir(NODE), "kernel.json"), k)
    write_proc(NODE, k)
    return 0


def modinfo(argv: list[str]) -> int:
    if argv and argv[-1] == "drbd":
        ver = os.environ.get("DRBD_DRIVER_VERSION_OVERRIDE") or "9.2.8"
        if "version" in argv:
            print(ver)
        else:
            print(f"filename:       /lib/modules/pyha-sim/drbd.ko\nversion:        {ver}")
        return 0
    return die(1, f"modinfo: ERROR: Module {argv[-1] if argv else '?'} not found.")


def main() -> int:
    prog = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if not BASE or not NODE:
        return die(20, f"{prog} (pyha simulator): PYHA_DRBDSIM_DIR and __DRBD_NODE__ must be set")
    if not os.path.isdir(BASE):  # the test is over: do not leave a new tree behind
        return die(20, f"{prog} (pyha simulator): {BASE} does not exist")
    os.makedirs(node_dir(NODE), exist_ok=True)
    with open(os.path.join(node_dir(NODE), "calls.log"), "a", encoding="utf-8") as log:
        log.write(f"{time.time():.3f} {prog} {' '.join(argv)}\n")
    delay = faults().get("delay", {}).get(prog)
    if delay:
        time.sleep(float(delay))
    with open(os.path.join(BASE, ".lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if prog == "drbdmeta":
            return drbdmeta(argv)
        if prog == "modprobe":
            return modprobe(argv)
        if prog == "modinfo":
            return modinfo(argv)
        return drbdsetup(argv, v84=prog.endswith("-84") or
                         str(kernel(NODE).get("loaded") or "9").startswith("8."))


if __name__ == "__main__":
    sys.exit(main())
