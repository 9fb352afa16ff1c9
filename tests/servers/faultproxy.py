#!/usr/bin/env python3
"""A fault-injecting proxy for plain FTP, between the mount and a real server, for the
end-to-end tests (stdlib only, one thread per connection direction).

It relays the control channel line by line and rewrites PASV (227) and EPSV (229) replies so
that every data connection goes through it too. Faults come from a JSON rules file, re-read
whenever it changes:

    {"generation": 3,                 # echoed to the ack file once loaded (see below)
     "refuse_for": 3.0,               # refuse (RST) new control connections for 3 s
     "kill_all": true,                # drop every current control and data connection
     "stall_for": 2.0,                # relay nothing, in any direction, for 2 s
     "rules": [
       {"cmd": "RETR",                # trigger: a command verb ...
        "path": "a.txt",              #   ... optionally whose argument contains this
        "code": 226,                  # ... or a reply code (instead of cmd)
        "nth": 2,                     # the 2nd occurrence since this generation (1-based),
                                      #   or "every"
        # actions (several may be combined):
        "drop": "before" | "after",   # drop control before forwarding / after the final reply
        "data_limit": 1000,           # the command's data connection carries at most 1000
        "data_close": "rst" | "fin",  #   bytes, then is cut (reset, or a clean close)
        "reply": "451 Failure ...",   # replace the final reply
        "delay": 5.0,                 # hold the final reply for 5 s
        "fake": ["125 Opening.", "425 Unable to build data connection"]
                                      # answer the command itself (not forwarded): the first
                                      #   reply, nothing on the data connection, then the last
       }]}

Every event goes to the log file, one per line: `gen N`, `C> VERB arg` (PASS hidden),
`S< reply`, `data VERB down|up BYTES`, `fault ...`, `refused`. After loading generation N
the proxy writes N to RULES.ack (atomically), so a test knows its rules are in force.

It exits when its parent dies. Every wait has a bound.
"""

import argparse
import json
import os
import re
import socket
import struct
import sys
import threading
import time

DATA_VERBS = {"RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD"}
LOCK = threading.RLock()


class State:
    def __init__(self, rules_path, log_path):
        self.rules_path = rules_path
        self.ack_path = rules_path + ".ack"
        self.log_file = open(log_path, "a", buffering=1)
        self.generation = 0
        self.rules = []
        self.counts = {}
        self.refuse_until = 0.0
        self.stall_until = 0.0
        self.sessions = set()
        self.stamp = None

    def log(self, line):
        with LOCK:
            self.log_file.write("%.3f %s\n" % (time.time(), line))

    def load(self):
        try:
            st = os.stat(self.rules_path)
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.stamp:
            return
        try:
            with open(self.rules_path) as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            self.log("rules unreadable: %s" % e)
            return
        self.stamp = stamp
        with LOCK:
            self.generation = int(spec.get("generation", self.generation + 1))
            self.rules = list(spec.get("rules", []))
            self.counts = {}
            now = time.time()
            if spec.get("refuse_for"):
                self.refuse_until = now + float(spec["refuse_for"])
            if spec.get("stall_for"):
                self.stall_until = now + float(spec["stall_for"])
            victims = list(self.sessions) if spec.get("kill_all") else []
        for s in victims:
            s.kill("kill_all")
        self.log("gen %d %s" % (self.generation, json.dumps(spec, sort_keys=True)))
        tmp = self.ack_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(self.generation))
        os.replace(tmp, self.ack_path)

    def match(self, key, arg):
        """The rules (with their generation) for the next occurrence of `key`
        (("cmd", VERB) or ("code", 226)) whose argument is `arg`."""
        hits = []
        with LOCK:
            for i, r in enumerate(self.rules):
                if key[0] == "cmd" and str(r.get("cmd", "")).upper() != key[1]:
                    continue
                if key[0] == "code" and r.get("code") != key[1]:
                    continue
                if r.get("path") and r["path"] not in (arg or ""):
                    continue
                n = self.counts[i] = self.counts.get(i, 0) + 1
                nth = r.get("nth", 1)
                if nth == "every" or nth == n:
                    hits.append(r)
        return hits

    def stall(self):
        deadline = time.time() + 600
        while time.time() < min(self.stall_until, deadline):
            time.sleep(0.05)


def close_hard(sock):
    """Close with a reset (SO_LINGER 0)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def close_soft(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class DataPipe:
    """One data connection: a listener the client connects to, joined to the server's own
    passive port."""

    def __init__(self, session, upstream_port):
        self.session = session
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.client = None
        self.server = None
        self.verb = "?"
        self.limit = None
        self.close_mode = "rst"
        self.fake = False
        self.sent = {"down": 0, "up": 0}
        self.cut = False
        self.connected = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        try:
            self.client, _ = self.listener.accept()
        except OSError:
            self.listener.close()
            self.connected.set()
            return
        self.listener.close()
        if self.fake:
            self.connected.set()
            return
        try:
            self.server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            self.server.settimeout(None)
        except OSError as e:
            self.session.state.log("data connect to server failed: %s" % e)
            close_hard(self.client)
            self.connected.set()
            return
        self.connected.set()
        t1 = threading.Thread(target=self.relay, args=(self.server, self.client, "down"), daemon=True)
        t2 = threading.Thread(target=self.relay, args=(self.client, self.server, "up"), daemon=True)
        t1.start()
        t2.start()

    def relay(self, src, dst, direction):
        st = self.session.state
        try:
            while True:
                chunk = src.recv(65536)
                st.stall()
                if not chunk:
                    break
                with LOCK:
                    if self.cut:
                        break
                    limit = self.limit
                    if limit is not None and self.sent[direction] + len(chunk) >= limit:
                        chunk = chunk[: max(0, limit - self.sent[direction])]
                        self.cut = True
                    self.sent[direction] += len(chunk)
                if chunk:
                    dst.sendall(chunk)
                if self.cut:
                    st.log("fault data %s %s cut after %d bytes (%s)"
                           % (self.verb, direction, self.sent[direction], self.close_mode))
                    self.cut_now()
                    return
            # A clean end: pass it on.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except OSError:
            close_hard(self.client)
            close_hard(self.server)
        finally:
            st.log("data %s %s %d" % (self.verb, direction, self.sent[direction]))
            self.done.set()

    def cut_now(self):
        if self.close_mode == "fin":
            close_soft(self.client)
        else:
            close_hard(self.client)
        close_hard(self.server)

    def close(self):
        try:
            self.listener.close()
        except OSError:
            pass
        close_hard(self.client)
        close_hard(self.server)


class Session:
    def __init__(self, state, client, upstream_port):
        self.state = state
        self.client = client
        self.upstream_port = upstream_port
        self.server = None
        self.pending = []  # [verb, arg, rules] awaiting a final reply
        self.pipe = None
        self.pipes = []
        self.dead = False
        self.send_lock = threading.Lock()

    def kill(self, why):
        with LOCK:
            if self.dead:
                return
            self.dead = True
            self.state.sessions.discard(self)
        self.state.log("control closed (%s)" % why)
        close_hard(self.client)
        close_hard(self.server)
        for p in self.pipes:
            p.close()

    def to_client(self, text):
        with self.send_lock:
            self.client.sendall(text.encode("latin-1") + b"\r\n")

    def run(self):
        try:
            self.server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            self.server.settimeout(None)
        except OSError as e:
            self.state.log("control connect to server failed: %s" % e)
            close_hard(self.client)
            return
        with LOCK:
            self.state.sessions.add(self)
        threading.Thread(target=self.replies, daemon=True).start()
        self.commands()

    def commands(self):
        st = self.state
        f = self.client.makefile("rb")
        try:
            while not self.dead:
                raw = f.readline(65536)
                if not raw:
                    break
                st.stall()
                line = raw.decode("latin-1").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                st.log("C> %s %s" % (verb, "****" if verb == "PASS" else arg))
                rules = st.match(("cmd", verb), arg)
                if any(r.get("drop") == "before" for r in rules):
                    st.log("fault drop before %s" % verb)
                    self.kill("before %s" % verb)
                    return
                fake = next((r for r in rules if r.get("fake")), None)
                pipe = self.pipe if verb in DATA_VERBS else None
                if pipe is not None:
                    self.pipe = None
                    with LOCK:
                        pipe.verb = verb
                        for r in rules:
                            if "data_limit" in r:
                                pipe.limit = int(r["data_limit"])
                                pipe.close_mode = r.get("data_close", "rst")
                if fake:
                    self.fake(verb, fake, pipe)
                    continue
                with LOCK:
                    self.pending.append([verb, arg, rules])
                self.server.sendall(raw)
        except OSError:
            pass
        finally:
            self.kill("client closed")

    def fake(self, verb, rule, pipe):
        first, last = rule["fake"][0], rule["fake"][-1]
        self.state.log("fault fake %s: %s / %s" % (verb, first, last))
        if pipe is not None:
            pipe.fake = True
        self.to_client(first)
        if pipe is not None:
            pipe.connected.wait(5)
            pipe.close()
        if rule.get("delay"):
            time.sleep(min(float(rule["delay"]), 600))
        self.to_client(last)
        self.state.log("S< %s (fake)" % last)

    def replies(self):
        st = self.state
        f = self.server.makefile("rb")
        try:
            while not self.dead:
                first = f.readline(65536)
                if not first:
                    break
                lines = [first.decode("latin-1").rstrip("\r\n")]
                # A multi-line reply: "123-..." up to "123 ...".
                if re.match(r"^\d{3}-", lines[0]):
                    code = lines[0][:3]
                    for _ in range(100000):
                        more = f.readline(65536)
                        if not more:
                            break
                        lines.append(more.decode("latin-1").rstrip("\r\n"))
                        if lines[-1].startswith(code + " "):
                            break
                st.stall()
                self.reply(lines)
        except OSError:
            pass
        finally:
            self.kill("server closed")

    def reply(self, lines):
        st = self.state
        text = "\r\n".join(lines)
        try:
            code = int(lines[0][:3])
        except ValueError:
            code = 0
        rules = []
        verb = "?"
        if code >= 200:
            with LOCK:
                if self.pending:
                    verb, _arg, rules = self.pending.pop(0)
        rules = rules + st.match(("code", code), "")
        st.log("S< %s%s" % (lines[-1], "" if verb == "?" else "   [%s]" % verb))
        for r in rules:
            if r.get("delay"):
                st.log("fault delay %s %s s" % (code, r["delay"]))
                time.sleep(min(float(r["delay"]), 600))
        for r in rules:
            if r.get("reply"):
                st.log("fault reply %s -> %s" % (code, r["reply"]))
                text = r["reply"]
                code = int(text[:3])
        if code == 227 or code == 229:
            text = self.passive(code, text)
        if any(r.get("drop") == "after" for r in rules):
            try:
                self.to_client(text)
            except OSError:
                pass
            self.kill("after %s" % verb)
            return
        self.to_client(text)

    def passive(self, code, text):
        if code == 227:
            m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
            if not m:
                return text
            port = int(m.group(5)) * 256 + int(m.group(6))
        else:
            m = re.search(r"\(\|\|\|(\d+)\|\)", text)
            if not m:
                return text
            port = int(m.group(1))
        if self.pipe is not None:
            self.pipe.close()
        pipe = DataPipe(self, port)
        self.pipe = pipe
        self.pipes = [p for p in self.pipes if not p.done.is_set()][-8:] + [pipe]
        if code == 227:
            return "227 Entering Passive Mode (127,0,0,1,%d,%d)." % (pipe.port >> 8, pipe.port & 255)
        return "229 Entering Extended Passive Mode (|||%d|)." % pipe.port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    state = State(a.rules, a.log)
    state.load()
    parent = os.getppid()

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(0)
            try:
                state.load()
            except Exception as e:  # keep watching whatever a rules file holds
                state.log("rules error: %s" % e)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.listen_port))
    listener.listen(64)
    state.log("listening on %d for %d" % (a.listen_port, a.upstream_port))
    while True:
        client, _ = listener.accept()
        if time.time() < state.refuse_until:
            state.log("refused")
            close_hard(client)
            continue
        s = Session(state, client, a.upstream_port)
        threading.Thread(target=s.run, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
