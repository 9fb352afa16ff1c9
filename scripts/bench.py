#!/usr/bin/env python3
"""Side-by-side benchmark: ftpmount, rclone mount (--vfs-cache-mode writes and off) and raw lftp,
in one run, against the same local vsftpd, plain and explicit TLS, at 0 ms and ~20 ms RTT.

The browsing workloads (issue 15) compare ftpmount with `rclone mount --vfs-cache-mode full`
(tool `rclone-full`) by the bytes the server sent, counted from its transfer log: `browse` does
what a file manager drawing thumbnails does to N images (8 KiB of each, then each whole), twice
on one mount and once more after a remount with the same cache directory; `head-8k` reads
8 KiB of each image once.

The small-file download workload (issue 16) `cp-small` copies a folder of small files out of
the mount with `cp -r` (lftp: `mirror`), cold.

    scripts/bench compare [--quick] [--rtt 0,20] [--security plain,tls] [--tools LIST] [--out DIR]
                          [--workloads LIST] [--max-connections N] [--tree DIRSxFILES]

`--max-connections N` caps the sessions of every tool that has such a setting (ftpmount
`--max-connections`, rclone `--ftp-concurrency`, lftp `net:connection-limit` and
`mirror --parallel=N`), as on a shared host that allows 3–8 sessions per user. `--tree 50x100`
sets the tree `ls -lR` walks (default 100x100).

Prints a markdown table and writes JSON (raw numbers and ratios) to DIR/bench.json. Writes are
timed until the data is on the server, rsync until the server's tree matches the source.
Needs root; installs vsftpd, lftp, rclone, rsync, fuse3 from apt when missing. The delayed link
is a network namespace joined by TUN devices through scripts/netdelay.py (no netem needed).
TLS rows use TLS 1.2 for every tool (lftp's GnuTLS stalls on TLS 1.3 with vsftpd; rclone needs
--ftp-disable-tls13), so the comparison is like with like.
"""

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USER = "ftpmount-bench"
NS = "ftpbench"
TOOLS = ["ftpmount", "ftpmount-wb", "rclone-writes", "rclone-off", "rclone-full", "lftp"]
# ftpmount with --write-back: only writes differ from the default.
WRITE_BACK_WORKLOADS = {"write", "rsync-small"}
OURS = ("ftpmount", "ftpmount-wb")
# The browsing workloads run only for these (rclone-full runs only them).
BROWSE_WORKLOADS = {"browse", "head-8k"}
BROWSE_TOOLS = ("ftpmount", "rclone-full")


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, **kw)


def need_packages():
    wanted = {"vsftpd": "vsftpd", "lftp": "lftp", "rclone": "rclone", "rsync": "rsync", "fusermount3": "fuse3", "openssl": "openssl"}
    missing = [pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None]
    if missing:
        print(f"==> apt-get install {' '.join(missing)}", file=sys.stderr)
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, stdout=subprocess.DEVNULL)


class Sizes:
    def __init__(self, quick, tree=None):
        self.big_mib = 32 if quick else 256
        self.small_files_0ms = 200 if quick else 2000
        self.small_files_rtt = 100 if quick else 500
        self.tree_dirs, self.tree_per_dir = (10, 100) if quick else (100, 100)
        if tree:
            self.tree_dirs, self.tree_per_dir = (int(x) for x in tree.lower().split("x"))
        self.random_reads = 50 if quick else 200
        self.download_small = 100 if quick else 500
        self.images = 30


# ---------------------------------------------------------------- servers and links


class Link:
    """0 ms: loopback. Otherwise a namespace behind scripts/netdelay.py."""

    def __init__(self, rtt_ms):
        self.rtt = rtt_ms
        self.proc = None
        if rtt_ms == 0:
            self.host, self.prefix = "127.0.0.1", []
            return
        self.proc = subprocess.Popen([sys.executable, str(REPO / "scripts/netdelay.py"), NS, str(rtt_ms)], stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the delayed link did not come up (needs /dev/net/tun and ip netns)")
        self.host, self.prefix = "10.77.0.2", ["ip", "netns", "exec", NS]

    def close(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


class Vsftpd:
    def __init__(self, work, link, tls, port, root=None):
        """Serves `root` (default: work/root) to USER; its config, log and certificates are in `work`."""
        self.port, self.tls, self.link = port, tls, link
        self.log = work / f"vsftpd-{port}.log"
        conf = work / f"vsftpd-{port}.conf"
        text = f"""listen=YES
listen_address={link.host}
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
local_root={root or work / 'root'}
pasv_enable=YES
pasv_min_port={port + 1}
pasv_max_port={port + 200}
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
pam_service_name=vsftpd
max_clients=500
max_per_ip=0
vsftpd_log_file={self.log}
xferlog_enable=YES
"""
        if tls:
            text += f"""ssl_enable=YES
rsa_cert_file={work / 'server.pem'}
rsa_private_key_file={work / 'server.key'}
ssl_ciphers=HIGH
force_local_logins_ssl=YES
force_local_data_ssl=YES
"""
        conf.write_text(text)
        self.proc = subprocess.Popen(link.prefix + ["vsftpd", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection((link.host, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"vsftpd did not start on {link.host}:{port}")

    def close(self):
        self.proc.terminate()
        self.proc.wait()

    def mark(self):
        """A position in the transfer log."""
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def settle(self, quiet=1.5, timeout=120):
        """Waits until the log has not grown for `quiet` seconds (downloads a client closed
        early are logged when the server notices)."""
        deadline, size, since = time.time() + timeout, self.mark(), time.time()
        while time.time() < deadline:
            time.sleep(0.1)
            now = self.mark()
            if now != size:
                size, since = now, time.time()
            elif time.time() - since >= quiet:
                return

    def sent_since(self, mark, end=None):
        """Downloads logged between `mark` and `end` (default: now): (count, bytes, closed
        early). vsftpd logs one `OK DOWNLOAD` or `FAIL DOWNLOAD` line per RETR with the bytes
        it sent, also when the client closed the transfer early."""
        count = total = early = 0
        with open(self.log, "rb") as f:
            f.seek(mark)
            data = f.read() if end is None else f.read(end - mark)
            for line in data.decode(errors="replace").splitlines():
                m = re.search(r"\] (OK|FAIL) DOWNLOAD: .*, (\d+) bytes, ", line)
                if m:
                    count += 1
                    total += int(m.group(2))
                    early += m.group(1) == "FAIL"
        return count, total, early


class SessionSampler:
    """Peak number of established TCP connections to the server's control port."""

    def __init__(self, host, port):
        self.want = (socket.inet_aton(host)[::-1].hex().upper(), f"{port:04X}")
        self.peak, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def count(self):
        # /proc/net/tcp is read in chunks and can list a socket twice while connections come
        # and go: count each (local, remote) pair once.
        seen = set()
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                ip, port = parts[2].split(":")
                if parts[3] == "01" and ip == self.want[0] and port == self.want[1]:
                    seen.add((parts[1], parts[2]))
        return len(seen)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.count())
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


class RssSampler:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                for line in open(f"/proc/{self.pid}/status"):
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return round(self.peak / 1024, 1)


# ---------------------------------------------------------------- clients


def mounted(path):
    want = str(path)
    return any(l.split(" ")[4] == want for l in open("/proc/self/mountinfo"))


class Mount:
    """ftpmount or rclone mount, in the foreground of a child process."""

    def __init__(self, tool, ctx, server, mnt, cache_dir=None):
        self.mnt = mnt
        mnt.mkdir(parents=True, exist_ok=True)
        log = open(ctx.work / f"{tool}.log", "a")
        env = dict(os.environ)
        host = server.link.host
        if tool in OURS:
            scheme = "ftps" if server.tls else "ftp"
            cmd = [str(ctx.bin), "mount", f"{scheme}://{USER}@{host}:{server.port}/", str(mnt)]
            cmd += ["--ca-file", str(ctx.work / "ca.pem"), "--tls-max-version", "1.2"] if server.tls else ["--tls", "off"]
            if ctx.max_connections:
                cmd += ["--max-connections", str(ctx.max_connections)]
            if tool == "ftpmount-wb":
                cmd += ["--write-back", "--cache-dir", str(cache_dir or ctx.work / "ftpmount-cache")]
            else:
                # A fresh content cache per mount, unless a workload keeps one on purpose: the
                # default (~/.cache/ftpmount) would be warm from the previous workload or run.
                cmd += ["--cache-dir", str(cache_dir or Path(tempfile.mkdtemp(prefix="ftpmount-cache.", dir=ctx.work)))]
            env["FTPMOUNT_PASSWORD"] = ctx.password
        else:
            cmd = ["rclone", "mount", ":ftp:/", str(mnt), "--ftp-host", host, "--ftp-port", str(server.port), "--ftp-user", USER]
            mode = {"rclone-writes": "writes", "rclone-off": "off", "rclone-full": "full"}[tool]
            cmd += ["--vfs-cache-mode", mode, "--cache-dir", str(cache_dir or ctx.work / "rclone-cache")]
            if ctx.max_connections:
                cmd += ["--ftp-concurrency", str(ctx.max_connections)]
            if server.tls:
                cmd += ["--ftp-explicit-tls", "--ftp-no-check-certificate", "--ftp-disable-tls13"]
            env["RCLONE_FTP_PASS"] = ctx.rclone_pass
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.time() + 30
        while not mounted(mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{tool} did not mount; see {ctx.work / (tool + '.log')}")
            time.sleep(0.05)
        self.rss = RssSampler(self.proc.pid)

    def close(self):
        rss = self.rss.finish()
        subprocess.run(["fusermount3", "-u", str(self.mnt)], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            subprocess.run(["umount", "-l", str(self.mnt)], stderr=subprocess.DEVNULL)
        return rss


def lftp(ctx, server, script, timeout=1800):
    settings = "set net:max-retries 2; set net:timeout 30; set cmd:fail-exit yes; set xfer:clobber yes; "
    if ctx.max_connections:
        settings += f"set net:connection-limit {ctx.max_connections}; "
    if server.tls:
        settings += "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ssl:verify-certificate no; set ssl:priority NORMAL:-VERS-TLS1.3; "
    else:
        settings += "set ftp:ssl-allow no; "
    full = f"{settings}open -u {USER},{ctx.password} -p {server.port} {server.link.host}; {script}"
    r = subprocess.run(["lftp", "-c", full], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"lftp exit status {r.returncode}: {r.stderr.strip()[-200:]}")


# ---------------------------------------------------------------- workloads


def server_tree(root):
    """Relative path -> size; files renamed away while we look (uploads finishing) are skipped."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                out[str(p.relative_to(root))] = p.stat().st_size
            except FileNotFoundError:
                pass
    return out


def wait_until(cond, timeout=1800):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise TimeoutError("the server never matched")
        time.sleep(0.05)


def write_big(ctx, tool, server, mnt):
    target = ctx.work / "root" / f"w-{tool}.bin"
    size = ctx.sizes.big_mib << 20
    start = time.time()
    if tool == "lftp":
        lftp(ctx, server, f"put {ctx.work / 'big-src.bin'} -o w-{tool}.bin")
    else:
        shutil.copyfile(ctx.work / "big-src.bin", mnt / f"w-{tool}.bin")
        wait_until(lambda: target.exists() and target.stat().st_size == size)
    took = time.time() - start
    target.unlink(missing_ok=True)
    return took, ctx.sizes.big_mib / took


def read_big(ctx, tool, server, mnt):
    start = time.time()
    if tool == "lftp":
        lftp(ctx, server, "cat big.bin > /dev/null")
    else:
        with open(mnt / "big.bin", "rb") as f:
            while f.read(1 << 20):
                pass
    took = time.time() - start
    return took, ctx.sizes.big_mib / took


def rsync_small(ctx, tool, server, mnt):
    src = ctx.work / ("small-rtt" if server.link.rtt else "small")
    dest_name = f"rs-{tool}"
    want = server_tree(src)
    start = time.time()
    if tool == "lftp":
        lftp(ctx, server, f"mirror -R --parallel={ctx.max_connections or 1} {src} {dest_name}")
    else:
        r = subprocess.run(["rsync", "-a", f"{src}/", str(mnt / dest_name)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
        if r.returncode != 0:
            shutil.rmtree(ctx.work / "root" / dest_name, ignore_errors=True)
            raise RuntimeError(f"rsync exit status {r.returncode}")
        wait_until(lambda: server_tree(ctx.work / "root" / dest_name) == want)
    took = time.time() - start
    shutil.rmtree(ctx.work / "root" / dest_name, ignore_errors=True)
    return took, None


def cp_small(ctx, tool, server, mnt):
    """A folder of small files copied out of the mount (`cp -r`; lftp: `mirror`), cold."""
    dest = ctx.work / f"cp-{tool}"
    shutil.rmtree(dest, ignore_errors=True)
    want = server_tree(ctx.work / "root" / "dl")
    start = time.time()
    if tool == "lftp":
        lftp(ctx, server, f"mirror --parallel={ctx.max_connections or 1} dl {dest}")
    else:
        subprocess.run(["cp", "-r", str(mnt / "dl"), str(dest)], check=True, timeout=1800)
    took = time.time() - start
    got = server_tree(dest)
    shutil.rmtree(dest, ignore_errors=True)
    if got != want:
        raise RuntimeError(f"the copy differs: {len(got)} files, {len(want)} expected")
    return took, None


def ls_lr(ctx, tool, server, mnt):
    start = time.time()
    if tool == "lftp":
        lftp(ctx, server, "find -l tree > /dev/null")
    else:
        subprocess.run(["ls", "-lR", str(mnt / "tree")], stdout=subprocess.DEVNULL, check=True, timeout=1800)
    return time.time() - start, None


def random_reads(ctx, tool, server, mnt):
    rng = random.Random(42)
    size = ctx.sizes.big_mib << 20
    offsets = [rng.randrange(0, size - 4096) for _ in range(ctx.sizes.random_reads)]
    start = time.time()
    if tool == "lftp":
        script = "; ".join(f"get1 -o {ctx.work / 'rr.out'} --source-region={o}-{o + 4096} big.bin" for o in offsets)
        lftp(ctx, server, script)
    else:
        fd = os.open(mnt / "big.bin", os.O_RDONLY)
        try:
            for o in offsets:
                if len(os.pread(fd, 4096, o)) != 4096:
                    raise RuntimeError("short read")
        finally:
            os.close(fd)
    return time.time() - start, None


def thumbnail_reads(folder, names):
    """What a file manager does to draw thumbnails (pcmanfm: a first read, then the whole file
    from a second open), per image."""
    for name in names:
        p = folder / name
        os.stat(p)
        fd = os.open(p, os.O_RDONLY)
        try:
            os.read(fd, 8192)
        finally:
            os.close(fd)
        fd = os.open(p, os.O_RDONLY)
        try:
            while os.read(fd, 1 << 16):
                pass
        finally:
            os.close(fd)


def browse(ctx, tool, server, mnt):
    """Thumbnail-like reads of every image: twice on one mount, then once after a remount with
    the same cache directory. Bytes come from the server's log, counted from one visit's start
    to the next one's (a transfer the server logs late counts for the visit before)."""
    names = sorted(os.listdir(ctx.work / "root" / "photos"))
    cache = ctx.work / f"browse-cache-{tool}"
    shutil.rmtree(cache, ignore_errors=True)
    visits, rss = [], 0
    mount = Mount(tool, ctx, server, mnt, cache_dir=cache)
    try:
        for label in ("first", "second", "remount"):
            if label == "remount":
                rss = max(rss, mount.close())
                mount = None
                mount = Mount(tool, ctx, server, mnt, cache_dir=cache)
            server.settle()
            mark = server.mark()
            start = time.time()
            thumbnail_reads(mnt / "photos", names)
            took = time.time() - start
            server.settle()
            visits.append({"visit": label, "seconds": round(took, 3), "mark": mark})
    finally:
        if mount:
            rss = max(rss, mount.close())
    server.settle()
    marks = [v.pop("mark") for v in visits] + [server.mark()]
    for v, (a, b) in zip(visits, zip(marks, marks[1:])):
        count, total, early = server.sent_since(a, b)
        v.update({"retr": count, "bytes": total, "closed_early": early})
    return sum(v["seconds"] for v in visits), None, {"visits": visits, "image_bytes": ctx.image_bytes, "rss_MiB": rss}


def head_8k(ctx, tool, server, mnt):
    """8 KiB of each image, once, on a fresh mount: what the server sends for it."""
    names = sorted(os.listdir(ctx.work / "root" / "photos"))
    server.settle()
    mark = server.mark()
    start = time.time()
    for name in names:
        fd = os.open(mnt / "photos" / name, os.O_RDONLY)
        try:
            if len(os.read(fd, 8192)) != 8192:
                raise RuntimeError("short read")
        finally:
            os.close(fd)
    took = time.time() - start
    server.settle()
    count, total, early = server.sent_since(mark)
    return took, None, {"retr": count, "bytes": total, "closed_early": early, "files": len(names)}


# Workloads that mount (and remount) by themselves.
OWN_MOUNTS = {"browse"}

WORKLOADS = [
    ("write", "MiB/s", write_big),
    ("read", "MiB/s", read_big),
    ("rsync-small", "s", rsync_small),
    ("ls-lR", "s", ls_lr),
    ("cp-small", "s", cp_small),
    ("random-4k", "s", random_reads),
    ("browse", "bytes", browse),
    ("head-8k", "bytes", head_8k),
]


# ---------------------------------------------------------------- setup and the run


class Ctx:
    pass


def prepare(ctx):
    sizes = ctx.sizes
    root = ctx.work / "root"
    root.mkdir()
    rnd = random.Random(7)
    with open(ctx.work / "big-src.bin", "wb") as f:
        for _ in range(sizes.big_mib):
            f.write(rnd.randbytes(1 << 20))
    shutil.copyfile(ctx.work / "big-src.bin", root / "big.bin")
    for d in range(sizes.tree_dirs):
        sub = root / "tree" / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(sizes.tree_per_dir):
            (sub / f"file-{i:04}.txt").write_bytes(b"x" * (i % 100))
    ctx.image_bytes = 0
    (root / "photos").mkdir()
    for i in range(sizes.images):
        side = 320 + (i * 97) % 280
        data = png(side + 40, side, rnd)
        (root / "photos" / f"photo-{i:02}.png").write_bytes(data)
        ctx.image_bytes += len(data)
    sizes.image_bytes = ctx.image_bytes
    for i in range(sizes.download_small):
        p = root / "dl" / f"d{i % 10}" / f"f{i:05}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randrange(1, 16 * 1024)))
    for name, count in (("small", sizes.small_files_0ms), ("small-rtt", sizes.small_files_rtt)):
        for i in range(count):
            p = ctx.work / name / f"d{i % 10}" / f"f{i:05}.dat"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rnd.randbytes(rnd.randrange(1, 16 * 1024)))
    sh("chown", "-R", USER, str(root))
    make_certs(ctx.work)


def make_certs(work):
    """A CA (ca.pem) and a server certificate (server.pem, server.key) in `work`, valid for
    both addresses a client may use (loopback and the delayed link's)."""
    w = str(work)
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench CA", "-keyout", f"{w}/ca.key", "-out", f"{w}/ca.pem", stderr=subprocess.DEVNULL)
    sh("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f"{w}/server.key", "-out", f"{w}/server.csr", stderr=subprocess.DEVNULL)
    Path(f"{w}/ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.77.0.2\nbasicConstraints=CA:FALSE\n")
    sh("openssl", "x509", "-req", "-in", f"{w}/server.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{w}/ext", "-out", f"{w}/server.pem", stderr=subprocess.DEVNULL)


def png(w, h, rnd):
    """A real PNG of w×h noisy pixels, stored uncompressed (a photo's size for its pixels)."""
    raw = b"".join(b"\0" + rnd.randbytes(w * 3) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b"")


def ensure_user(password):
    if subprocess.run(["id", USER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        sh("useradd", "-m", "-s", "/bin/bash", USER)
    sh("chpasswd", input=f"{USER}:{password}\n", text=True)
    if os.path.exists("/etc/ftpusers"):
        lines = [l for l in open("/etc/ftpusers").read().splitlines() if l.strip() != USER]
        Path("/etc/ftpusers").write_text("\n".join(lines) + "\n")
    os.makedirs("/var/run/vsftpd/empty", exist_ok=True)


def run_one(ctx, tool, server, workload):
    name, unit, fn = workload
    mnt = ctx.work / "mnt" / tool
    mount = None
    sessions = SessionSampler(server.link.host, server.port)
    try:
        if tool != "lftp" and name not in OWN_MOUNTS:
            mount = Mount(tool, ctx, server, mnt)  # a fresh mount per workload: cold caches
        took, rate, *extra = fn(ctx, tool, server, mnt)
        result = {"seconds": round(took, 3)}
        if rate is not None:
            result["MiB/s"] = round(rate, 1)
        if extra:
            result.update(extra[0])
    except Exception as e:  # a tool that fails a workload is reported, not fatal
        result = {"error": str(e)[:200]}
    finally:
        if mount:
            rss = mount.close()
            if "error" not in result:
                result["rss_MiB"] = rss
        result["peak_sessions"] = sessions.finish()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, TLS only (under 3 minutes)")
    p.add_argument("--rtt", default="0,20", help="round-trip times in ms (default 0,20)")
    p.add_argument("--security", default=None, help="plain,tls (default both; --quick: tls)")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--workloads", default=",".join(w[0] for w in WORKLOADS))
    p.add_argument("--max-connections", type=int, default=None, help="session limit for every tool that has one (default: each tool's own)")
    p.add_argument("--tree", default=None, help="DIRSxFILES of the tree ls -lR walks (default 100x100; --quick 10x100)")
    p.add_argument("--bin", default=None, help="an ftpmount binary to measure instead of building this tree (before/after runs)")
    p.add_argument("--out", default=None, help="directory for bench.json (default: a temporary one, printed)")
    args = p.parse_args()
    if os.getuid() != 0:
        raise SystemExit("scripts/bench needs root (vsftpd, FUSE mounts, network namespaces)")
    need_packages()
    if not args.bin:
        sh("cargo", "build", "--release", "--locked", "--quiet", cwd=REPO)

    ctx = Ctx()
    ctx.sizes = Sizes(args.quick, args.tree)
    ctx.max_connections = args.max_connections
    ctx.bin = Path(args.bin).resolve() if args.bin else REPO / "target/release/ftpmount"
    ctx.work = Path(tempfile.mkdtemp(prefix="ftpmount-bench."))
    os.chmod(ctx.work, 0o755)
    # Never starting with "-": `rclone obscure` would take it for an option.
    ctx.password = "p" + secrets.token_urlsafe(12)
    ctx.rclone_pass = subprocess.run(["rclone", "obscure", ctx.password], capture_output=True, text=True, check=True).stdout.strip()
    ensure_user(ctx.password)
    prepare(ctx)
    tools = args.tools.split(",")
    workloads = [w for w in WORKLOADS if w[0] in args.workloads.split(",")]
    security = (args.security or ("tls" if args.quick else "plain,tls")).split(",")
    results = []
    started = time.time()
    try:
        for rtt in [int(x) for x in args.rtt.split(",")]:
            link = Link(rtt)
            try:
                for sec in security:
                    server = Vsftpd(ctx.work, link, sec == "tls", 21000 + rtt * 10 + (500 if sec == "tls" else 0))
                    try:
                        for w in workloads:
                            for tool in tools:
                                if tool == "ftpmount-wb" and w[0] not in WRITE_BACK_WORKLOADS:
                                    continue
                                if w[0] in BROWSE_WORKLOADS and tool not in BROWSE_TOOLS:
                                    continue
                                if tool == "rclone-full" and w[0] not in BROWSE_WORKLOADS:
                                    continue
                                r = run_one(ctx, tool, server, w)
                                row = {"workload": w[0], "security": sec, "rtt_ms": rtt, "tool": tool, **r}
                                print(json.dumps(row), file=sys.stderr, flush=True)
                                results.append(row)
                    finally:
                        server.close()
            finally:
                link.close()
    finally:
        out_dir = Path(args.out) if args.out else ctx.work.parent / f"{ctx.work.name}-results"
        out_dir.mkdir(parents=True, exist_ok=True)
        report = {"machine": machine(), "sizes": vars(ctx.sizes), "max_connections": ctx.max_connections, "seconds": round(time.time() - started), "results": results, "ratios": ratios(results)}
        (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
        print(table(results, tools, workloads, ctx.sizes))
        print(f"\nJSON: {out_dir / 'bench.json'}")
        for m in (ctx.work / "mnt").glob("*"):
            if mounted(m):
                subprocess.run(["umount", "-l", str(m)])
        shutil.rmtree(ctx.work, ignore_errors=True)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release}


def value(r, unit):
    if "error" in r:
        return None
    if unit == "bytes":  # downloaded: all visits of `browse`
        return sum(v["bytes"] for v in r["visits"]) if "visits" in r else r["bytes"]
    return r.get("MiB/s") if unit == "MiB/s" else r["seconds"]


def better_by(mine, theirs, unit):
    """> 1: ours is better (more MiB/s, fewer seconds or bytes); None when it cannot be said."""
    if not mine or not theirs:
        return None
    return mine / theirs if unit == "MiB/s" else theirs / mine


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def cell(r, unit):
    if unit != "bytes":
        v = f"{r['MiB/s']} MiB/s" if unit == "MiB/s" else f"{r['seconds']} s"
        return f"{v} ({r['peak_sessions']} sess{', ' + str(r['rss_MiB']) + ' MiB RSS' if 'rss_MiB' in r else ''})"
    if "visits" in r:
        return " · ".join(f"{v['visit']}: {mib(v['bytes'])} in {v['retr']} RETR, {v['seconds']} s" for v in r["visits"])
    return f"{mib(r['bytes'])} in {r['retr']} RETR ({r['closed_early']} closed early), {r['seconds']} s"


def ratios(results):
    """ftpmount (and ftpmount --write-back) against each other tool, per row: > 1 means ftpmount is better."""
    out = []
    units = {w[0]: w[1] for w in WORKLOADS}
    keys = {(r["workload"], r["security"], r["rtt_ms"]) for r in results}
    for key in sorted(keys):
        rows = {r["tool"]: r for r in results if (r["workload"], r["security"], r["rtt_ms"]) == key}
        for ours in OURS:
            mine = rows.get(ours)
            if not mine or value(mine, units[key[0]]) is None:
                continue
            for tool, r in rows.items():
                v = value(r, units[key[0]])
                if tool in OURS or v is None:
                    continue
                ratio = better_by(value(mine, units[key[0]]), v, units[key[0]])
                if ratio is None:
                    continue
                out.append({"workload": key[0], "security": key[1], "rtt_ms": key[2], "tool": ours, "against": tool, "ftpmount_better_by": round(ratio, 2)})
    return out


def table(results, tools, workloads, sizes):
    desc = {
        "write": f"{sizes.big_mib} MiB write, end to end",
        "read": f"{sizes.big_mib} MiB read",
        "rsync-small": f"rsync -a {sizes.small_files_0ms} (0 ms) / {sizes.small_files_rtt} (RTT) small files, end to end",
        "ls-lR": f"ls -lR {sizes.tree_dirs * sizes.tree_per_dir} files, cold",
        "cp-small": f"cp -r {sizes.download_small} small files out of the mount (lftp: mirror), cold",
        "random-4k": f"{sizes.random_reads} random 4 KiB reads",
        "browse": f"browse {sizes.images} images ({mib(getattr(sizes, 'image_bytes', 0))}; 8 KiB then whole, each): bytes the server sent",
        "head-8k": f"8 KiB of each of {sizes.images} images: bytes the server sent",
    }
    lines = ["| workload | security | RTT | " + " | ".join(tools) + " | ftpmount vs each |", "|---" * (len(tools) + 4) + "|"]
    for w in workloads:
        for key in sorted({(r["security"], r["rtt_ms"]) for r in results if r["workload"] == w[0]}):
            rows = {r["tool"]: r for r in results if r["workload"] == w[0] and (r["security"], r["rtt_ms"]) == key}
            cells = []
            for t in tools:
                r = rows.get(t)
                if r is None:
                    cells.append("—")
                elif "error" in r:
                    cells.append("fails")
                else:
                    cells.append(cell(r, w[1]))
            rel = []
            for ours in OURS:
                mine = rows.get(ours)
                for t in tools:
                    if t in OURS or t not in rows or not mine:
                        continue
                    ratio = better_by(value(mine, w[1]), value(rows[t], w[1]), w[1])
                    if ratio is not None:
                        prefix = "wb " if ours == "ftpmount-wb" else ""
                        rel.append(f"{prefix}{t} {ratio:.2f}×")
            lines.append(f"| {desc[w[0]]} | {key[0]} | {key[1]} ms | " + " | ".join(cells) + " | " + ", ".join(rel) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
