#!/usr/bin/env python3
"""A tiny inetd for the end-to-end tests: listens on 127.0.0.1:PORT and runs COMMAND for each
accepted connection, with the socket as its standard input and output (inetd "nowait" mode),
as inetutils-ftpd and netkit ftpd expect. Each connection is logged to stderr."""

import argparse
import os
import signal
import socket
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]

    # Children are reaped by the kernel; sessions outlive nothing but their connection.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    while True:
        conn, peer = listener.accept()
        try:
            child = subprocess.Popen(args.command, stdin=conn, stdout=conn, close_fds=True)
            print("connection from %s:%d: pid %d" % (peer[0], peer[1], child.pid), file=sys.stderr, flush=True)
        except OSError as e:
            print("cannot start %s: %s" % (args.command, e), file=sys.stderr, flush=True)
        conn.close()


if __name__ == "__main__":
    main()
