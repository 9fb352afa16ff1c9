#!/usr/bin/env python3
"""Scale benchmark (issue 19): a directory of 100,000 files and a tree of 1,000,000 entries on
the server's disk, read through ftpmount and `rclone mount`, against the same local vsftpd over
explicit FTPS (TLS 1.2; `--security plain`: plain FTP) on loopback (0 ms).

    scripts/bench scale [--files N] [--tree DIRSxFILES] [--tools ftpmount,rclone] [--bin PATH]
                        [--security tls|plain] [--idle SECONDS] [--step-timeout SECONDS]
                        [--keep-data DIR] [--out DIR]

Per tool, two fresh mounts (the second phase starts from a clean daemon, so its RSS targets are
about the walk alone):
  1. the big directory: RSS after mounting; cold `ls -l` (time, peak RSS); warm `ls -l`
     again (time, peak RSS); RSS after.
  2. the tree: RSS after mounting; cold `find TREE | wc -l` (time, peak RSS, the count, which
     must equal the count on the server's disk); RSS just after; `--idle` seconds of nothing;
     RSS then; `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets the mount's dentries and
     inodes and sends FORGET to the daemon), a few seconds; RSS then; a second `find` (time,
     peak RSS); RSS after.
For reference the same `ls -l` and `find` run on the server's own disk (warm: once first, then
timed), and the server's floor for a cold `ls -l`: vsftpd's `LIST` shows no seconds, so exact
times cost one `MDTM` per file, and the floor is how long vsftpd takes to answer one `MDTM` for
every file of big/ to the cheapest client there is (`openssl s_client`, or a raw socket over
plain FTP), 8 sessions, every command sent at once, nothing else running. RSS is sampled every 50 ms. `LC_ALL=C`, `ls -l --color=never`, output to /dev/null.

A step that takes longer than `--step-timeout` is killed and recorded as "did not finish in
N s"; the run goes on (the second walk is skipped when the first did not finish).

The data: BIG = big/ with N empty-looking files (sparse, sizes 0..4999 bytes), TREE = tree/
with DIRS directories of FILES files each, so `find tree` prints 1 + DIRS + DIRS*FILES lines.
mtimes spread over ~400 days, so about half are older than six months (LIST shows a year for
those). `--keep-data DIR` generates into DIR (served as the FTP root) and reuses it on the next
run when its shape matches (1,000,000 files take a minute or two to create); without it the data
lives in a temporary directory that is removed at the end.

Prints a markdown table (rows: measurements; columns: the tools and the server's disk) and the
ratios the targets of issue 19 are judged by, and writes scale.json (and the tools' logs) to
--out. To tell where time and memory go, the table also shows the daemon's CPU seconds per
step, vsftpd's CPU seconds per mount (all its sessions), the 1-minute load average (the
machine may be shared; the tools' own sessions add to it), and the kernel's FUSE inodes in use
(/proc/slabinfo, system-wide) at mount, after the walk and after drop_caches: whether the
kernel did forget them.
Needs root (vsftpd serves a system account, FUSE mounts, drop_caches).
"""

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, USER, Ctx, Link, Mount, RssSampler, Vsftpd, ensure_user, machine, make_certs, mounted, need_packages, sh  # noqa: E402

# Tool name here -> the Mount tool of bench.py (rclone: no VFS cache, listing only).
TOOLS = {"ftpmount": "ftpmount", "rclone": "rclone-off"}
MANIFEST = ".bench-scale.json"
DATA_VERSION = 1
SETTLE_AFTER_DROP = 5  # seconds between drop_caches and reading RSS (FORGETs arrive)
ENV = dict(os.environ, LC_ALL="C")

# Targets of issue 19 (MiB, ratios).
WALK_PEAK_MAX = 128
IDLE_RETURN_MAX = 32
WARM_LS_MAX = 1.5
COLD_LS_MAX = 3.0
SECOND_WALK_SLACK = 1.0  # MiB: "does not raise the peak", give or take 50 ms sampling


# ---------------------------------------------------------------- data on the server's disk


def tree_entries(dirs, per_dir):
    """Lines `find tree` prints: the top, its directories and their files."""
    return 1 + dirs + dirs * per_dir


def make_file(path, i, uid, gid, now):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, (i * 37) % 5000)  # sparse: a size without blocks
        os.fchown(fd, uid, gid)
        # Ages 0..~400 days, spread: about half older than six months.
        mtime = now - (i * 2654435761) % (400 * 86400)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def generate(root, files, dirs, per_dir):
    """Creates root/big and root/tree, or reuses them when root's manifest says they match."""
    want = {"version": DATA_VERSION, "files": files, "dirs": dirs, "per_dir": per_dir, "complete": True}
    manifest = root / MANIFEST
    if manifest.exists():  # ours, from an earlier run (complete or interrupted)
        try:
            if json.loads(manifest.read_text()) == want and (root / "big").is_dir() and (root / "tree").is_dir():
                print(f"==> reusing the data in {root} ({files} files; tree {dirs}x{per_dir})", file=sys.stderr)
                return
        except ValueError:
            pass
        print(f"==> {root} holds data of another shape or an interrupted run: generating it again", file=sys.stderr)
        shutil.rmtree(root / "big", ignore_errors=True)
        shutil.rmtree(root / "tree", ignore_errors=True)
    elif any(root.iterdir()):
        raise SystemExit(f"{root} is not empty and was not made by bench scale (no {MANIFEST}); give an empty or new directory")
    manifest.write_text(json.dumps({**want, "complete": False}))
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout.strip())
    gid = int(subprocess.run(["id", "-g", USER], capture_output=True, text=True, check=True).stdout.strip())
    old = os.umask(0o022)
    start, now = time.time(), int(time.time())
    try:
        big = root / "big"
        big.mkdir()
        os.chown(big, uid, gid)
        for i in range(files):
            make_file(f"{big}/file-{i:07}.dat", i, uid, gid, now)
        print(f"==> {files} files in big/ ({time.time() - start:.0f} s)", file=sys.stderr)
        tree = root / "tree"
        tree.mkdir()
        os.chown(tree, uid, gid)
        n = 0
        for d in range(dirs):
            sub = f"{tree}/d{d:05}"
            os.mkdir(sub)
            os.chown(sub, uid, gid)
            for i in range(per_dir):
                make_file(f"{sub}/f{i:06}.dat", n, uid, gid, now)
                n += 1
            if (d + 1) % max(1, dirs // 10) == 0:
                print(f"    tree: {d + 1}/{dirs} directories ({time.time() - start:.0f} s)", file=sys.stderr)
    finally:
        os.umask(old)
    manifest.write_text(json.dumps(want))
    print(f"==> generated in {time.time() - start:.0f} s", file=sys.stderr)


def check_reachable(root):
    """vsftpd enters the root as the FTP user: every directory above it must be searchable."""
    for p in [root, *root.parents]:
        if not os.stat(p).st_mode & 0o001:
            raise SystemExit(f"{p} is not searchable by others (o+x), so vsftpd's user {USER} cannot reach {root}")


# ---------------------------------------------------------------- measuring


def say(text):
    print(f"==> {text}", file=sys.stderr, flush=True)


def rss_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def fuse_inodes():
    """Kernel FUSE inodes in use, system-wide (/proc/slabinfo): shows whether drop_caches made
    the kernel forget the mount's inodes (each forgotten one is a FORGET to the daemon)."""
    try:
        for line in open("/proc/slabinfo"):
            if line.startswith("fuse_inode "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    """CPU seconds (user + system) the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def server_cpu_s(server):
    """CPU seconds of vsftpd and its finished sessions (each session is a child process; its
    time counts once it has exited and been reaped, so read this after an unmount)."""
    try:
        f = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def close_and_count(mount, server, r, key):
    """Unmounts, then records the server's CPU seconds spent on this mount's sessions."""
    peak = mount.close()
    time.sleep(2)  # the sessions end once their control connections close
    after = server_cpu_s(server)
    if after is not None and r.get(key) is not None:
        r[key] = round(after - r[key], 1)
    else:
        r.pop(key, None)
    return peak


def load():
    """The 1-minute load average: the machine may be shared, and timings with it."""
    return round(os.getloadavg()[0], 1)


def step(cmd, timeout, pid=None, count=False):
    """Runs cmd (its own process group, so a timeout kills the whole pipeline) and returns
    {"seconds", "peak_MiB" and "cpu_s" (of the daemon pid, RSS sampled every 50 ms), "count"
    (lines, when count)} or {"timeout": seconds} or {"error": ...}."""
    sampler = RssSampler(pid) if pid else None
    cpu0 = cpu_s(pid) if pid else None
    start = time.time()
    p = subprocess.Popen(cmd, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if count else subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        r = {"timeout": timeout}
    else:
        took = time.time() - start
        if p.returncode != 0:
            r = {"error": f"exit status {p.returncode}: {err.decode(errors='replace').strip()[-300:]}", "seconds": round(took, 3)}
        else:
            r = {"seconds": round(took, 3)}
            if count:
                r["count"] = int(out.split()[0])
    if sampler:
        r["peak_MiB"] = sampler.finish()
        cpu1 = cpu_s(pid)
        if cpu0 is not None and cpu1 is not None:
            r["cpu_s"] = round(cpu1 - cpu0, 1)
    return r


def ls_cmd(path):
    return ["ls", "-l", "--color=never", str(path)]


def find_cmd(path):
    return ["bash", "-c", 'set -o pipefail; find "$1" | wc -l', "find", str(path)]


def drop_caches():
    Path("/proc/sys/vm/drop_caches").write_text("2\n")


def warm_server_disk(root):
    """Every inode of the data in the page/inode cache, so no tool meets a colder server disk
    than another (drop_caches in a previous tool's run forgot them)."""
    sh("du", "-s", str(root), stdout=subprocess.DEVNULL)


def on_disk(root):
    r = {"load": load()}
    for key, cmd, count in (("ls", ls_cmd(root / "big"), False), ("find", find_cmd(root / "tree"), True)):
        step(cmd, None, count=count)  # warm
        r[key] = step(cmd, None, count=count)
    return r


def mdtm_floor(ctx, server, root, sessions=8):
    """Seconds vsftpd takes to answer one MDTM per file of big/, spread over `sessions`
    sessions of the cheapest client (all commands sent at once, answers read as they come)."""
    names = sorted(os.listdir(root / "big"))
    procs = []
    for k in range(sessions):
        script = ctx.work / f"mdtm-floor-{k}"
        lines = [f"USER {USER}", f"PASS {ctx.password}"] + [f"MDTM /big/{n}" for n in names[k::sessions]] + ["QUIT"]
        script.write_text("".join(f"{l}\r\n" for l in lines))
        if server.tls:
            cmd = ["openssl", "s_client", "-quiet", "-ign_eof", "-starttls", "ftp", "-tls1_2", "-connect", f"{server.link.host}:{server.port}"]
        else:
            client = ("import socket, sys, threading\n"
                      "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
                      "threading.Thread(target=s.sendall, args=(open(sys.argv[3], 'rb').read(),)).start()\n"
                      "while (b := s.recv(1 << 20)):\n    sys.stdout.buffer.write(b)\n")
            cmd = [sys.executable, "-c", client, server.link.host, str(server.port), str(script)]
        procs.append((cmd, script))
    started = time.time()
    running = [subprocess.Popen(cmd, stdin=open(script, "rb"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for cmd, script in procs]
    answers = sum(p.communicate(timeout=600)[0].count(b"213 ") for p in running)
    seconds = round(time.time() - started, 2)
    if answers < len(names):
        return {"error": f"{answers} of {len(names)} MDTMs answered"}
    return {"seconds": seconds, "sessions": sessions}


def run_tool(ctx, tool, server, root, args, expected):
    mnt = ctx.work / "mnt" / tool
    r = {"load_at_start": load()}
    warm_server_disk(root)
    r["ls_server_cpu_s"] = server_cpu_s(server)
    mount = Mount(TOOLS[tool], ctx, server, mnt)
    try:
        pid = mount.proc.pid
        r["ls_rss_start"] = rss_mib(pid)
        say(f"{tool}: cold ls -l of big/")
        r["ls_cold"] = step(ls_cmd(mnt / "big"), args.step_timeout, pid)
        r["ls_warm"] = step(ls_cmd(mnt / "big"), args.step_timeout, pid)
        r["ls_rss_after"] = rss_mib(pid)
    finally:
        r["ls_mount_peak"] = close_and_count(mount, server, r, "ls_server_cpu_s")
    print(json.dumps({"tool": tool, **r}), file=sys.stderr, flush=True)

    warm_server_disk(root)
    r["walk_server_cpu_s"] = server_cpu_s(server)
    mount = Mount(TOOLS[tool], ctx, server, mnt)
    try:
        pid = mount.proc.pid
        r["walk_rss_start"] = rss_mib(pid)
        r["fuse_inodes_at_start"] = fuse_inodes()
        say(f"{tool}: cold find of tree/")
        r["walk1"] = step(find_cmd(mnt / "tree"), args.step_timeout, pid, count=True)
        r["walk_rss_after"] = rss_mib(pid)
        r["fuse_inodes_after_walk"] = fuse_inodes()
        if "count" in r["walk1"] and r["walk1"]["count"] != expected:
            r["walk1"]["mismatch"] = expected
            print(f"\n!!! COUNT MISMATCH: find through {tool} printed {r['walk1']['count']} lines, the server's disk {expected}\n", file=sys.stderr, flush=True)
        print(json.dumps({"tool": tool, **r}), file=sys.stderr, flush=True)
        say(f"{tool}: {args.idle} s idle, then drop_caches")
        time.sleep(args.idle)
        r["idle_rss"] = rss_mib(pid)
        drop_caches()
        time.sleep(SETTLE_AFTER_DROP)
        r["idle_dropped_rss"] = rss_mib(pid)
        r["fuse_inodes_after_drop"] = fuse_inodes()
        if "seconds" in r["walk1"] and "error" not in r["walk1"]:
            say(f"{tool}: second find of tree/")
            r["walk2"] = step(find_cmd(mnt / "tree"), args.step_timeout, pid, count=True)
            if "count" in r["walk2"] and r["walk2"]["count"] != expected:
                r["walk2"]["mismatch"] = expected
                print(f"\n!!! COUNT MISMATCH: the second find through {tool} printed {r['walk2']['count']} lines, the server's disk {expected}\n", file=sys.stderr, flush=True)
        else:
            r["walk2"] = {"skipped": "the first walk did not finish"}
        r["walk2_rss_after"] = rss_mib(pid)
    finally:
        r["walk_mount_peak"] = close_and_count(mount, server, r, "walk_server_cpu_s")
    r["load_at_end"] = load()
    return r


# ---------------------------------------------------------------- report


def targets(r, disk):
    """The numbers issue 19's targets are judged by, for one tool's results: name -> (value, limit, ok)."""
    out = {}

    def secs(s):
        return s.get("seconds") if s and "seconds" in s and "error" not in s else None

    disk_ls = secs(disk.get("ls"))
    for key, name, limit in (("ls_warm", "warm ls -l / ls -l on disk", WARM_LS_MAX), ("ls_cold", "cold ls -l / ls -l on disk", COLD_LS_MAX)):
        t = secs(r.get(key))
        if t is not None and disk_ls:
            v = round(t / disk_ls, 2)
            out[name] = {"value": v, "limit": limit, "ok": v <= limit}
    w1, w2 = r.get("walk1", {}), r.get("walk2", {})
    if "peak_MiB" in w1 and secs(w1) is not None:
        out["peak RSS over the walk"] = {"value": w1["peak_MiB"], "limit": WALK_PEAK_MAX, "ok": w1["peak_MiB"] < WALK_PEAK_MAX}
    if r.get("idle_dropped_rss") is not None and r.get("walk_rss_start") is not None:
        v = round(r["idle_dropped_rss"] - r["walk_rss_start"], 1)
        out["RSS after idle + drop_caches - RSS at mount"] = {"value": v, "limit": IDLE_RETURN_MAX, "ok": v <= IDLE_RETURN_MAX}
    if secs(w1) is not None and secs(w2) is not None:
        v = round(w2["peak_MiB"] - w1["peak_MiB"], 1)
        out["second-walk peak - first-walk peak"] = {"value": v, "limit": SECOND_WALK_SLACK, "ok": v <= SECOND_WALK_SLACK}
    return out


def fmt_step(s, with_peak=True, with_count=False):
    if not s:
        return "—"
    if "skipped" in s:
        return f"skipped ({s['skipped']})"
    if "timeout" in s:
        text = f"did not finish in {s['timeout']} s"
    elif "error" in s:
        text = f"failed: {s['error'][:80]}"
    else:
        text = f"{s['seconds']:.2f} s"
        if with_count and "count" in s:
            text += f", {s['count']:,} entries"
            if "mismatch" in s:
                text += f" **MISMATCH: {s['mismatch']:,} on disk**"
    if with_peak and "peak_MiB" in s:
        text += f", peak {s['peak_MiB']} MiB"
    if "cpu_s" in s:
        text += f", daemon CPU {s['cpu_s']} s"
    return text


def fmt_mib(v):
    return "—" if v is None else f"{v} MiB"


def table(results, tools, disk, args, expected):
    cols = tools + ["on disk (warm)"]
    lines = ["| measurement | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def row(label, fn, disk_cell="—"):
        cells = []
        for t in tools:
            r = results.get(t, {})
            cells.append(f"fails: {r['error'][:80]}" if "error" in r else fn(r))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {disk_cell} |")

    row("load average (1 min; the machine is shared) at start → end", lambda r: f"{r.get('load_at_start')} → {r.get('load_at_end')}", str(disk.get("load", "—")))
    row("RSS after mounting (phase 1)", lambda r: fmt_mib(r.get("ls_rss_start")))
    row(f"cold `ls -l` of {args.files:,} files", lambda r: fmt_step(r.get("ls_cold")))
    row("warm `ls -l` again", lambda r: fmt_step(r.get("ls_warm")), fmt_step(disk.get("ls"), with_peak=False))
    floor = disk.get("mdtm_floor", {})
    floor_cell = fmt_step(floor, with_peak=False) + (f" ({floor['seconds'] / disk['ls']['seconds']:.2f}× the disk's `ls -l`)" if "seconds" in floor and "seconds" in disk.get("ls", {}) else "")
    row(f"the server's floor: one `MDTM` per file of big/ to the cheapest client, {floor.get('sessions', 8)} sessions", lambda r: "—", floor_cell)
    row("RSS after `ls -l`", lambda r: fmt_mib(r.get("ls_rss_after")))
    row("RSS after mounting (phase 2)", lambda r: fmt_mib(r.get("walk_rss_start")))
    row(f"cold `find` of {expected:,} entries", lambda r: fmt_step(r.get("walk1"), with_count=True), fmt_step(disk.get("find"), with_peak=False, with_count=True))
    row("RSS just after the walk", lambda r: fmt_mib(r.get("walk_rss_after")))
    row(f"RSS after {args.idle} s idle", lambda r: fmt_mib(r.get("idle_rss")))
    row(f"RSS after idle + drop_caches + {SETTLE_AFTER_DROP} s", lambda r: fmt_mib(r.get("idle_dropped_rss")))
    row("kernel FUSE inodes (system-wide): at mount → after the walk → after drop_caches",
        lambda r: " → ".join("—" if r.get(k) is None else f"{r[k]:,}" for k in ("fuse_inodes_at_start", "fuse_inodes_after_walk", "fuse_inodes_after_drop")))
    row("second `find`", lambda r: fmt_step(r.get("walk2"), with_count=True))
    row("vsftpd CPU (all sessions, mount to unmount): ls phase / walk phase",
        lambda r: " / ".join("—" if r.get(k) is None else f"{r[k]} s" for k in ("ls_server_cpu_s", "walk_server_cpu_s")))
    row("RSS after the second walk", lambda r: fmt_mib(r.get("walk2_rss_after")))
    out = "\n".join(lines)

    names = []
    for t in tools:
        for n in results.get(t, {}).get("targets", {}):
            if n not in names:
                names.append(n)
    if names:
        limits = {"warm ls -l / ls -l on disk": f"≤ {WARM_LS_MAX}×", "cold ls -l / ls -l on disk": f"≤ {COLD_LS_MAX}×",
                  "peak RSS over the walk": f"< {WALK_PEAK_MAX} MiB", "RSS after idle + drop_caches - RSS at mount": f"≤ {IDLE_RETURN_MAX} MiB",
                  "second-walk peak - first-walk peak": f"≤ 0 MiB (+{SECOND_WALK_SLACK:g} sampling slack)"}
        t_lines = ["| target (issue 19) | limit | " + " | ".join(tools) + " |", "|---" * (len(tools) + 2) + "|"]
        for n in names:
            cells = []
            for t in tools:
                v = results.get(t, {}).get("targets", {}).get(n)
                unit = "×" if n.endswith("on disk") else " MiB"
                cells.append("—" if v is None else f"{v['value']}{unit} {'✓' if v['ok'] else '✗'}")
            t_lines.append(f"| {n} | {limits[n]} | " + " | ".join(cells) + " |")
        out += "\n\n" + "\n".join(t_lines)
    return out


# ---------------------------------------------------------------- the run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100000, help="files in the big directory (default 100000)")
    p.add_argument("--tree", default="1000x1000", help="DIRSxFILES of the walked tree (default 1000x1000: 1,001,001 entries)")
    p.add_argument("--tools", default=",".join(TOOLS), help="ftpmount,rclone (default both)")
    p.add_argument("--bin", default=None, help="an ftpmount binary to measure instead of building this tree")
    p.add_argument("--security", choices=("tls", "plain"), default="tls", help="explicit FTPS with TLS 1.2 (default) or plain FTP")
    p.add_argument("--idle", type=float, default=45, help="seconds of idle after the first walk (default 45)")
    p.add_argument("--step-timeout", type=float, default=1800, help="seconds one ls or find may take before it is killed (default 1800)")
    p.add_argument("--keep-data", default=None, help="generate the data into DIR (the FTP root) and reuse it next time")
    p.add_argument("--out", default=None, help="directory for scale.json (default: a temporary one, printed)")
    args = p.parse_args()
    dirs, per_dir = (int(x) for x in args.tree.lower().split("x"))
    security = "explicit FTPS, TLS 1.2" if args.security == "tls" else "plain FTP"
    tools = args.tools.split(",")
    for t in tools:
        if t not in TOOLS:
            raise SystemExit(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    if os.getuid() != 0:
        raise SystemExit("scripts/bench scale needs root (vsftpd, FUSE mounts, drop_caches)")
    need_packages()
    if args.bin:
        binary = Path(args.bin).resolve()
    else:
        sh("cargo", "build", "--release", "--locked", "--quiet", cwd=REPO)
        binary = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve() / "release/ftpmount"

    ctx = Ctx()
    ctx.bin = binary
    ctx.max_connections = None
    ctx.work = Path(tempfile.mkdtemp(prefix="ftpmount-scale."))
    os.chmod(ctx.work, 0o755)
    # Never starting with "-": `rclone obscure` would take it for an option.
    ctx.password = "p" + secrets.token_urlsafe(12)
    ctx.rclone_pass = subprocess.run(["rclone", "obscure", ctx.password], capture_output=True, text=True, check=True).stdout.strip() if "rclone" in tools else ""
    ensure_user(ctx.password)
    make_certs(ctx.work)
    if args.keep_data:
        root = Path(args.keep_data).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = ctx.work / "root"
        root.mkdir()
    os.chmod(root, 0o755)
    check_reachable(root)
    expected = tree_entries(dirs, per_dir)
    results, disk, started = {}, {}, time.time()
    link = server = None
    try:
        generate(root, args.files, dirs, per_dir)
        say("ls -l and find on the server's disk")
        disk = on_disk(root)
        print(json.dumps({"on_disk": disk}), file=sys.stderr, flush=True)
        if disk["find"].get("count") != expected:
            print(f"\n!!! the server's disk has {disk['find'].get('count')} entries under tree/, {expected} expected\n", file=sys.stderr, flush=True)
        expected = disk["find"].get("count", expected)
        link = Link(0)
        server = Vsftpd(ctx.work, link, args.security == "tls", 30000 + random.randrange(0, 9000), root=root)
        say("the server's floor: one MDTM per file of big/")
        disk["mdtm_floor"] = mdtm_floor(ctx, server, root)
        for tool in tools:
            try:
                r = run_tool(ctx, tool, server, root, args, expected)
            except Exception as e:  # a tool that fails is a failed column, not a crashed run
                r = {"error": str(e)[:300]}
            r["targets"] = targets(r, disk)
            results[tool] = r
            print(json.dumps({"tool": tool, **r}), file=sys.stderr, flush=True)
    finally:
        if server:
            server.close()
        if link:
            link.close()
        for m in (ctx.work / "mnt").glob("*"):
            if mounted(m):
                subprocess.run(["umount", "-l", str(m)])
        out_dir = Path(args.out) if args.out else ctx.work.parent / f"{ctx.work.name}-results"
        out_dir.mkdir(parents=True, exist_ok=True)
        report = {"machine": machine(), "binary": str(binary), "files": args.files, "tree": {"dirs": dirs, "per_dir": per_dir, "entries": expected},
                  "idle_s": args.idle, "step_timeout_s": args.step_timeout, "security": security, "rtt_ms": 0,
                  "seconds": round(time.time() - started), "on_disk": disk, "results": results}
        (out_dir / "scale.json").write_text(json.dumps(report, indent=2))
        for log in ctx.work.glob("*.log"):  # the tools' own logs, for a look afterwards
            shutil.copyfile(log, out_dir / log.name)
        print()
        print(f"ftpmount scale: {args.files:,} files in one directory; find over {expected:,} entries; vsftpd, {security}, 0 ms")
        print()
        print(table(results, tools, disk, args, expected))
        print(f"\nJSON: {out_dir / 'scale.json'}")
        shutil.rmtree(ctx.work, ignore_errors=True)
    mismatch = any("mismatch" in results[t].get(k, {}) for t in results for k in ("walk1", "walk2"))
    if mismatch:
        print("\n!!! a walk through the mount did not see every entry (see MISMATCH above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
