#!/usr/bin/env python3
"""A second, different FTP server for the end-to-end tests: pyftpdlib, which offers MLSD
(vsftpd does not), optionally with explicit FTPS."""

import argparse
import logging
import os
import re
import stat
import time

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
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


class DosListingFS(AbstractedFS):
    """LIST in the DOS/IIS format: `MM-DD-YY  HH:MMAM       <DIR>          name` for
    directories, `MM-DD-YY  HH:MMAM             size name` for files, in the server's clock
    (local time when use_gmt_times is off), with no seconds, no owner and no links."""

    def format_list(self, basedir, listing, ignore_err=True):
        timefunc = time.gmtime if self.cmd_channel.use_gmt_times else time.localtime
        for basename in listing:
            try:
                st = self.stat(os.path.join(basedir, basename))
            except OSError:
                if ignore_err:
                    continue
                raise
            when = time.strftime("%m-%d-%y  %I:%M%p", timefunc(st.st_mtime))
            if stat.S_ISDIR(st.st_mode):
                line = "%s       <DIR>          %s\r\n" % (when, basename)
            else:
                line = "%s %20d %s\r\n" % (when, st.st_size, basename)
            yield line.encode("utf8", self.cmd_channel.unicode_errors)


def iis_like(base, dos_listing, refuse_rename_over, utc_mdtm, fail_rnto_after_dele=False):
    """A handler that behaves like Microsoft's FTP server (or FileZilla Server) where asked:
    DOS listings and no MLSD/MLST (so none in FEAT), and RNTO onto an existing name refused
    with 550; with utc_mdtm, MDTM in UTC while LIST shows local time. With
    fail_rnto_after_dele, an RNTO onto a name that was just deleted fails once (a failure
    between the two steps of an unsafe replace: delete the old file, rename the new one)."""

    class IisLike(base):
        deleted = set()
        if dos_listing:
            proto_cmds = {k: v for k, v in base.proto_cmds.items() if k not in ("MLSD", "MLST")}

        def ftp_MDTM(self, path):
            if utc_mdtm:
                # IIS answers MDTM in UTC (RFC 3659) even where its LIST shows local time.
                saved, self.use_gmt_times = self.use_gmt_times, True
                try:
                    return super().ftp_MDTM(path)
                finally:
                    self.use_gmt_times = saved
            return super().ftp_MDTM(path)

        def ftp_DELE(self, path):
            if fail_rnto_after_dele:
                IisLike.deleted.add(path)
            return super().ftp_DELE(path)

        def ftp_RNTO(self, path):
            if path in IisLike.deleted:
                # The fault: the link breaks between removing a file and renaming onto its name.
                IisLike.deleted.discard(path)
                self._rnfr = None
                logging.warning("failed RNTO onto %s right after DELE of it", path)
                self.respond("550 Simulated failure between DELE and RNTO.")
                return
            if refuse_rename_over and self._rnfr and os.path.lexists(path):
                self._rnfr = None
                self.respond("550 Cannot create a file when that file already exists.")
                return
            return super().ftp_RNTO(path)

    return IisLike


def no_mdtm(base):
    """A handler without MDTM (and so none in FEAT): only LIST shows times, as on servers
    where nothing can be compared with the listing."""

    class NoMdtm(base):
        proto_cmds = {k: v for k, v in base.proto_cmds.items() if k != "MDTM"}

    return NoMdtm


def auth_tls_then_fail(base):
    """A plain server that offers AUTH TLS, accepts it with 234, and then breaks the TLS
    handshake (answers the ClientHello with bytes that are not TLS): TLS is broken on this
    server, and only going on in plain text would work."""

    class Broken(base):
        proto_cmds = dict(base.proto_cmds)
        proto_cmds["AUTH"] = dict(perm=None, auth=False, arg=True, help="Syntax: AUTH <SP> TLS|SSL.")
        _extra_feats = list(getattr(base, "_extra_feats", [])) + ["AUTH TLS", "PBSZ", "PROT"]

        def ftp_AUTH(self, line):
            self.respond("234 AUTH %s successful." % line.upper())
            self.push("220 this is not a TLS ServerHello\r\n")
            self.close_when_done()

    return Broken


def answers_avbl(base, available):
    """A handler that answers AVBL (draft-peterson-streamlined-ftp-command-extensions, as
    Serv-U does) with `213 <bytes available>`, and lists it in FEAT."""

    class Avbl(base):
        proto_cmds = dict(base.proto_cmds)
        proto_cmds["AVBL"] = dict(perm="l", auth=True, arg=None, help="Syntax: AVBL [<SP> path].")
        _extra_feats = list(getattr(base, "_extra_feats", [])) + ["AVBL"]

        def ftp_AVBL(self, path):
            self.respond("213 %d" % available)

    return Avbl


def set_clock_offset(offset):
    """Run this server in a zone `+HH:MM` east of UTC, with no zone marker in its times."""
    m = re.fullmatch(r"([+-])(\d\d):(\d\d)", offset)
    if not m:
        raise SystemExit("--local-time-offset wants +HH:MM or -HH:MM")
    # POSIX TZ counts west of UTC: +05:30 is "LOC-05:30".
    os.environ["TZ"] = "LOC%s%s:%s" % ("-" if m.group(1) == "+" else "+", m.group(2), m.group(3))
    time.tzset()


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
    p.add_argument("--dos-listing", action="store_true",
                   help="LIST in DOS/IIS format, and no MLSD/MLST (as Microsoft's FTP server)")
    p.add_argument("--refuse-rename-over", action="store_true",
                   help="refuse (550) RNTO onto an existing name (as IIS and FileZilla Server)")
    p.add_argument("--local-time-offset",
                   help="+HH:MM: LIST and MDTM show times in this zone, without a marker")
    p.add_argument("--utc-mdtm", action="store_true",
                   help="with --local-time-offset: MDTM stays in UTC (as IIS), only LIST is local")
    p.add_argument("--no-mdtm", action="store_true", help="no MDTM: only LIST shows times")
    p.add_argument("--fail-rnto-after-dele", action="store_true",
                   help="fail (550, once) an RNTO onto a name that was just deleted")
    p.add_argument("--auth-tls-then-fail", action="store_true",
                   help="offer and accept AUTH TLS, then fail the handshake")
    p.add_argument("--avbl", type=int, help="answer AVBL with this many bytes available")
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
    if args.dos_listing or args.refuse_rename_over or args.utc_mdtm or args.fail_rnto_after_dele:
        handler = iis_like(handler, args.dos_listing, args.refuse_rename_over, args.utc_mdtm,
                           args.fail_rnto_after_dele)
    if args.no_mdtm:
        handler = no_mdtm(handler)
    if args.dos_listing:
        handler.abstracted_fs = DosListingFS
    if args.local_time_offset:
        set_clock_offset(args.local_time_offset)
        handler.use_gmt_times = False
    if args.auth_tls_then_fail:
        handler = auth_tls_then_fail(handler)
    if args.avbl is not None:
        handler = answers_avbl(handler, args.avbl)
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
