#!/usr/bin/env python3
"""pyftpdlib as the second, different FTP server of the end-to-end tests.

Unlike vsftpd it offers MLSD/MLST (exact times, "type=" facts), shows dot files in listings,
and speaks explicit FTPS without demanding TLS session reuse on data connections. It serves
ROOT to one user from a DummyAuthorizer; times are UTC (use_gmt_times).

    pyftpd.py --port 2121 --root DIR --user U --password P
              [--cert CERT.pem --key KEY.pem]   explicit FTPS, required for login and data
              [--tls-versions any|1.2|1.3]      restrict TLS (default: any)
              [--passive MIN-MAX]               passive port range
              [--max-cons N] [--max-cons-per-ip N]
              [--read-only]                     permissions "elr" instead of "elradfmwMT"
              [--case-insensitive]              hook: resolve names case-insensitively (TODO)

Prints "READY <port>" on stdout once listening; logs every command and reply (PASS masked,
"<- MLSD", "-> 226 …") to stderr.
"""

import argparse
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer


class CaseInsensitiveFS(AbstractedFS):
    """HOOK for the case-folding tests: a filesystem that resolves each path component
    case-insensitively, like an IIS/Windows server (`get MYFILE.TXT` finds `myfile.txt`,
    `STOR Myfile.txt` overwrites `myfile.txt`).

    To implement: override `ftp2fs(self, ftppath)` so that, for every component after the
    root, an existing entry whose name equals the component ignoring case (str.casefold) is
    used instead of the literal name (exact match preferred; a new name stays as given).
    Listings keep the stored case. Then remove the NotImplementedError below.
    """

    def ftp2fs(self, ftppath):
        raise NotImplementedError("CaseInsensitiveFS.ftp2fs")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls-versions", choices=["any", "1.2", "1.3"], default="any")
    p.add_argument("--passive", help="MIN-MAX passive port range")
    p.add_argument("--max-cons", type=int, default=512)
    p.add_argument("--max-cons-per-ip", "--max-per-user", type=int, default=0)
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--case-insensitive", action="store_true")
    args = p.parse_args()

    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(threadName)s %(message)s"
    )

    if args.case_insensitive:
        sys.exit(
            "pyftpd.py: --case-insensitive is not implemented yet; "
            "see CaseInsensitiveFS in tests/servers/pyftpd.py"
        )

    authorizer = DummyAuthorizer()
    perm = "elr" if args.read_only else "elradfmwMT"
    authorizer.add_user(args.user, args.password, args.root, perm=perm)

    if args.cert:
        from OpenSSL import SSL
        from pyftpdlib.handlers import TLS_FTPHandler

        class Handler(TLS_FTPHandler):
            pass

        Handler.certfile = args.cert
        Handler.keyfile = args.key or args.cert
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        if args.tls_versions == "1.2":
            Handler.ssl_options = Handler.ssl_options | SSL.OP_NO_TLSv1_3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1
        elif args.tls_versions == "1.3":
            Handler.ssl_options = Handler.ssl_options | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_TLSv1_2
    else:
        class Handler(FTPHandler):
            pass

    Handler.authorizer = authorizer
    Handler.banner = "pyftpdlib test server ready."
    if args.passive:
        lo, hi = (int(x) for x in args.passive.split("-"))
        Handler.passive_ports = list(range(lo, hi + 1))
    if args.case_insensitive:
        Handler.abstracted_fs = CaseInsensitiveFS

    server = ThreadedFTPServer(("127.0.0.1", args.port), Handler)
    server.max_cons = args.max_cons
    server.max_cons_per_ip = args.max_cons_per_ip
    print(f"READY {args.port}", flush=True)
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    main()
