#!/usr/bin/env python3
"""A second, different FTP server for the end-to-end tests: pyftpdlib, which offers MLSD
(vsftpd does not), optionally with explicit FTPS."""

import argparse
import logging
import os

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import ThreadedFTPServer


def dead_passive(base, port):
    """A handler whose PASV/EPSV replies point at a port nobody listens on: the control
    connection works, every data connection fails (a firewalled passive port range)."""

    class DeadPassive(base):
        def ftp_PASV(self, line):
            self.respond("227 Entering passive mode (127,0,0,1,%d,%d)." % (port >> 8, port & 0xFF))

        def ftp_EPSV(self, line):
            self.respond("229 Entering extended passive mode (|||%d|)." % port)

    return DeadPassive


def endless_listing(base, directory):
    """A handler that answers a listing of `directory` with one line that never ends: a
    hostile server trying to make the client hold everything it sends."""

    class Endless(base):
        def _endless(self, cmd):
            class Forever:
                def more(self):
                    return b"x" * 65536

            self.push_dtp_data(Forever(), isproducer=True, cmd=cmd)

        def ftp_MLSD(self, path):
            if path.rstrip("/").endswith(directory):
                return self._endless("MLSD")
            return super().ftp_MLSD(path)

        def ftp_LIST(self, path):
            if path.rstrip("/").endswith(directory):
                return self._endless("LIST")
            return super().ftp_LIST(path)

    return Endless


def cut_listing_once(base, directory):
    """A handler that breaks off the first listing of `directory` halfway, as a server that
    restarts mid-listing: some lines, then the data and control connections are cut."""

    class CutOnce(base):
        cut = False

        def ftp_MLSD(self, path):
            if CutOnce.cut or not path.rstrip("/").endswith(directory):
                return super().ftp_MLSD(path)
            CutOnce.cut = True
            control = self

            class Half:
                sent = False

                def more(self):
                    if not self.sent:
                        self.sent = True
                        return b"".join(b"type=file;size=1; partial-%d\r\n" % i for i in range(200))
                    logging.warning("cut the listing of %s", path)
                    control.close()
                    return b""

            self.push_dtp_data(Half(), isproducer=True, cmd="MLSD")

    return CutOnce


def endless_size_reply(base):
    """A handler that answers SIZE with a reply line that never ends: a hostile server trying
    to make the client hold everything it sends on the control connection."""

    class EndlessReply(base):
        def ftp_SIZE(self, path):
            class Forever:
                def __init__(self):
                    self.first = True

                def more(self):
                    head, self.first = (b"213 " if self.first else b""), False
                    return head + b"9" * 65536

            self.push_with_producer(Forever())

    return EndlessReply


def refusing_while(base, flag):
    """A handler that, while the file `flag` exists, answers 421 to every new connection but
    the first from an address: a server that suddenly allows one session per client."""

    class Refusing(base):
        def handle(self):
            if os.path.exists(flag) and self.server.ip_map.count(self.remote_ip) > 1:
                return self.handle_max_cons_per_ip()
            return super().handle()

    return Refusing


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--passive", help="MIN-MAX passive port range")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--max-per-user", type=int, default=0)
    p.add_argument("--dead-pasv-port", type=int,
                   help="announce this port (where nothing listens) for passive data connections")
    p.add_argument("--masquerade", help="announce this address in PASV replies (a server behind NAT)")
    p.add_argument("--no-epsv", action="store_true", help="offer PASV only (no EPSV in FEAT)")
    p.add_argument("--endless-listing", help="list this directory as one line that never ends")
    p.add_argument("--cut-listing-once", help="break off the first listing of this directory halfway")
    p.add_argument("--endless-size-reply", action="store_true", help="answer SIZE with a line that never ends")
    p.add_argument("--refuse-while", help="while this file exists, refuse (421) all sessions but one per client")
    args = p.parse_args()

    logging.basicConfig(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")

    handler = TLS_FTPHandler if args.cert else FTPHandler
    if args.cert:
        handler.certfile = args.cert
        handler.keyfile = args.key
        handler.tls_control_required = True
        handler.tls_data_required = True
    if args.no_epsv:
        handler.proto_cmds = {k: v for k, v in handler.proto_cmds.items() if k != "EPSV"}
    if args.masquerade:
        handler.masquerade_address = args.masquerade
    if args.dead_pasv_port:
        handler = dead_passive(handler, args.dead_pasv_port)
    if args.endless_listing:
        handler = endless_listing(handler, args.endless_listing)
    if args.cut_listing_once:
        handler = cut_listing_once(handler, args.cut_listing_once)
    if args.endless_size_reply:
        handler = endless_size_reply(handler)
    if args.refuse_while:
        handler = refusing_while(handler, args.refuse_while)
    handler.authorizer = authorizer
    handler.banner = "pyftpdlib test server ready."
    if args.passive:
        lo, hi = (int(x) for x in args.passive.split("-"))
        handler.passive_ports = range(lo, hi + 1)

    server = ThreadedFTPServer(("127.0.0.1", args.port), handler)
    server.max_cons = 256
    server.max_cons_per_ip = args.max_per_user
    server.serve_forever()


if __name__ == "__main__":
    main()
