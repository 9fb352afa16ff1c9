//! A small FTP server on 127.0.0.1 for unit tests of the FTP remote: it answers the login,
//! `PASV` and housekeeping commands every test needs, and a test's [`Script`] the rest.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::FtpRemote;
use super::session::{Endpoint, TlsMode};
use super::zone::UtcOffset;
use crate::names::Charset;

/// What a test's server does beyond the common commands.
pub(super) trait Script: Clone + Send + 'static {
    /// The `FEAT` reply.
    fn feat(&self) -> String;

    /// The reply to `verb` (upper case) with `arg`; `pasv` holds the listener of the last
    /// `PASV`, for a transfer (whose `150` and data the script sends itself on `control`).
    /// `None`: not a command of this server (`502`); `Some(None)`: drop the connection.
    fn answer(
        &self,
        verb: &str,
        arg: &str,
        control: &mut TcpStream,
        pasv: &mut Option<TcpListener>,
    ) -> Option<Option<String>>;
}

/// Listens on 127.0.0.1 and serves every connection on its own thread; returns the port.
pub(super) fn start(script: impl Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let script = script.clone();
            std::thread::spawn(move || serve(&script, socket));
        }
    });
    port
}

fn serve(script: &impl Script, socket: TcpStream) {
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut out = socket;
    let mut pasv: Option<TcpListener> = None;
    let _ = out.write_all(b"220 test server\r\n");
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let cmd = line.trim_end().to_string();
        line.clear();
        let (verb, arg) = cmd.split_once(' ').unwrap_or((&cmd, ""));
        let verb = verb.to_ascii_uppercase();
        let reply = match verb.as_str() {
            "USER" => "331 password".to_string(),
            "PASS" => "230 ok".to_string(),
            "FEAT" => script.feat(),
            "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let p = l.local_addr().unwrap().port();
                pasv = Some(l);
                format!("227 Entering Passive Mode (127,0,0,1,{},{})", p >> 8, p & 0xff)
            }
            "QUIT" => return drop(out.write_all(b"221 bye\r\n")),
            "TYPE" | "CWD" | "NOOP" | "OPTS" => "200 ok".to_string(),
            _ => match script.answer(&verb, arg, &mut out, &mut pasv) {
                Some(Some(reply)) => reply,
                Some(None) => return,
                None => "502 not here".to_string(),
            },
        };
        if out.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// A remote on the server at `port`: plain FTP, at most `sessions` sessions.
pub(super) fn remote(port: u16, sessions: usize, server_timezone: Option<UtcOffset>) -> FtpRemote {
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
        user: "u".into(),
        password: crate::secret::Secret::new("p"),
        tls: TlsMode::Off,
        tls_client: None,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(10),
        reconnect_for: Duration::from_secs(5),
        greeted_before: Default::default(),
        charset: Charset::Utf8,
        server_timezone,
    };
    FtpRemote::connect(endpoint, sessions, "", std::sync::Arc::new(crate::clock::SystemClock)).unwrap().0
}
