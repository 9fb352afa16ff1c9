//! Turning suppaftp's errors and FTP replies into [`RemoteError`]s a person can act on.

use std::io;

use suppaftp::FtpError;
use suppaftp::types::Response;

use crate::remote::RemoteError;

/// The reply code, read from the raw reply: suppaftp maps codes it does not know (522, 534, ...)
/// to 0, so the first three bytes are the truth.
pub fn code(resp: &Response) -> u16 {
    let digits = resp.body.get(..3).and_then(|d| std::str::from_utf8(d).ok());
    digits.and_then(|d| d.parse().ok()).unwrap_or(resp.status.code() as u16)
}

/// The reply as one line of text, e.g. `550 Failed to open file.`
pub fn text(resp: &Response) -> String {
    let s = String::from_utf8_lossy(&resp.body);
    let s = s.trim_end();
    // Multi-line replies: the last line carries the verdict.
    s.lines().last().unwrap_or(s).trim().to_string()
}

/// Every line of a reply (a multi-line reply's earlier lines may say what the last does not).
pub fn full_text(resp: &Response) -> String {
    String::from_utf8_lossy(&resp.body).trim_end().to_string()
}

fn io_error(what: &str, err: &io::Error) -> RemoteError {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RemoteError::Timeout(format!(
            "{what}: the server did not answer in time (--io-timeout). The server or the network may be overloaded or down"
        )),
        _ => RemoteError::Connection(format!("{what}: connection failed: {err}")),
    }
}

/// Maps a failed command. `what` says what was tried, e.g. `listing /docs`.
pub fn map(what: &str, err: FtpError) -> RemoteError {
    match err {
        FtpError::ConnectionError(e) => io_error(what, &e),
        FtpError::SecureError(msg) => RemoteError::Tls(format!("{what}: TLS failed: {msg}")),
        FtpError::UnexpectedResponse(resp) => map_reply(what, &resp),
        FtpError::BadResponse => RemoteError::Protocol(format!("{what}: the server sent a reply we could not parse")),
        FtpError::InvalidAddress(e) => {
            RemoteError::Protocol(format!("{what}: the server announced an unusable data address ({e})"))
        }
        FtpError::DataConnectionAlreadyOpen => {
            RemoteError::Protocol(format!("{what}: a transfer was still open on this session"))
        }
    }
}

/// Maps a failed data transfer command (`RETR`, `STOR`, `APPE`) or a transfer's final reply.
/// On a session whose TLS 1.3 data connections ran out of tickets (`tickets_ran_out`), a
/// refused data connection (`425`, `522`) was refused for not resuming the control session,
/// not by a firewall: the message says so (the generic one points at passive ports).
pub fn map_data(what: &str, err: FtpError, tickets_ran_out: bool) -> RemoteError {
    match err {
        FtpError::UnexpectedResponse(resp) if tickets_ran_out && matches!(code(&resp), 425 | 522) => {
            RemoteError::Connection(format!(
                "{what}: server said \"{}\": the server refused a data connection whose TLS session did not resume \
                 the control connection's (it hands out too few TLS 1.3 tickets); sessions from now on use TLS 1.2",
                text(&resp)
            ))
        }
        e => map(what, e),
    }
}

/// Maps a negative reply by its code (and, for the ambiguous 550, its text).
pub fn map_reply(what: &str, resp: &Response) -> RemoteError {
    let code = code(resp);
    let said = text(resp);
    let lower = said.to_ascii_lowercase();
    let msg = |hint: &str| {
        if hint.is_empty() {
            format!("{what}: server said \"{said}\"")
        } else {
            format!("{what}: server said \"{said}\". {hint}")
        }
    };
    match code {
        421 => RemoteError::TooManyConnections(msg(
            "The server refused another session; lower --max-connections if this persists",
        )),
        425 => RemoteError::Connection(msg(
            "The data connection could not be opened: a firewall may block the server's passive (PASV) ports",
        )),
        // "451 Failure writing to local file" (vsftpd), "451 … No space left on device" (pyftpdlib).
        451 | 450 | 550 if mentions_full(&lower) => {
            RemoteError::NoSpace(msg("The server's disk is full or the quota is used up"))
        }
        426 | 451 => RemoteError::Connection(msg("The transfer was interrupted")),
        452 | 552 => RemoteError::NoSpace(msg("The server is out of space or over quota")),
        // The session can no longer open data connections; a fresh session can.
        522 => RemoteError::Connection(msg(
            "The data connection's TLS session was not accepted (the server requires it to resume the \
             control connection's session); retrying on a new session",
        )),
        534 => RemoteError::Tls(msg("The server's TLS requirements were not met")),
        530 if mentions_tls(&lower) => RemoteError::Login(msg(
            "The server requires an encrypted connection: use --tls explicit (ftps://) or --tls implicit",
        )),
        530 => RemoteError::PermissionDenied(msg("Not logged in or not allowed")),
        550 if lower.contains("not a directory") => RemoteError::NotADirectory(msg("")),
        550 if lower.contains("is a directory") => RemoteError::IsADirectory(msg("")),
        550 | 553 if lower.contains("denied") || lower.contains("permission") || lower.contains("not allowed") => {
            RemoteError::PermissionDenied(msg(""))
        }
        // "File unavailable (busy)": not an answer about existence, and worth a second try.
        450 => RemoteError::Connection(msg("The server says the file is busy or unavailable for now")),
        550 => RemoteError::NotFound(msg("")),
        553 => RemoteError::PermissionDenied(msg("The server does not allow this name")),
        500 if lower.contains("too long") => {
            RemoteError::NameTooLong(msg("The path is too long for the server; use shorter names or fewer levels"))
        }
        500 | 502 | 504 => RemoteError::Unsupported(msg("The server does not support this command")),
        _ => RemoteError::Protocol(msg("")),
    }
}

fn mentions_full(lower: &str) -> bool {
    ["no space", "disk full", "quota", "writing to local file", "insufficient storage"]
        .iter()
        .any(|w| lower.contains(w))
}

fn mentions_tls(lower: &str) -> bool {
    ["encrypt", "tls", "ssl", "secure"].iter().any(|w| lower.contains(w))
}

/// The words of a listing's final reply that say the server cut it short, if any do
/// (Pure-FTPd: `226 Output truncated to 10000 matches`; any line of a multi-line reply).
pub fn cut_notice(reply: &str) -> Option<String> {
    reply.lines().map(strip_code).find(|line| says_cut(&line.to_ascii_lowercase())).map(str::to_string)
}

/// A reply line without its `226-` / `226 ` code.
fn strip_code(line: &str) -> &str {
    let line = line.trim();
    let b = line.as_bytes();
    if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[3], b' ' | b'-') {
        line[4..].trim_start()
    } else {
        line
    }
}

fn says_cut(lower: &str) -> bool {
    const MANY: [&str; 4] = ["entries", "files", "matches", "items"];
    lower.contains("truncat")
        || (lower.contains("too many") && MANY.iter().any(|w| lower.contains(w)))
        || ((lower.contains("limited to") || lower.contains("limit of")) && MANY.iter().any(|w| lower.contains(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;

    fn resp(line: &str) -> Response {
        Response::new(Status::Unknown, line.as_bytes().to_vec())
    }

    #[test]
    fn unknown_codes_are_read_from_the_raw_reply() {
        assert_eq!(code(&resp("522 SSL connection failed: session reuse required\r\n")), 522);
        let err = map_reply("reading a.txt", &resp("522 SSL connection failed: session reuse required"));
        assert!(err.is_transient() && err.breaks_session(), "retried on a fresh session: {err:?}");
    }

    #[test]
    fn replies_map_to_the_right_kind() {
        type Is = fn(&RemoteError) -> bool;
        let cases: &[(&str, Is)] = &[
            ("550 Failed to open file.", |e| matches!(e, RemoteError::NotFound(_))),
            ("550 Permission denied.", |e| matches!(e, RemoteError::PermissionDenied(_))),
            ("552 Disk quota exceeded", |e| matches!(e, RemoteError::NoSpace(_))),
            ("452 Insufficient storage", |e| matches!(e, RemoteError::NoSpace(_))),
            ("451 Failure writing to local file.", |e| matches!(e, RemoteError::NoSpace(_))),
            ("451 [Errno 28] No space left on device", |e| matches!(e, RemoteError::NoSpace(_))),
            ("426 Failure reading network stream.", |e| matches!(e, RemoteError::Connection(_))),
            ("421 Too many connections (8) from this IP", |e| matches!(e, RemoteError::TooManyConnections(_))),
            ("530 Non-anonymous sessions must use encryption.", |e| matches!(e, RemoteError::Login(_))),
            ("502 Command not implemented.", |e| matches!(e, RemoteError::Unsupported(_))),
        ];
        for (line, ok) in cases {
            let err = map_reply("x", &resp(line));
            assert!(ok(&err), "{line} -> {err:?}");
            assert!(err.to_string().contains(line), "message quotes the server: {err}");
        }
    }

    #[test]
    fn a_refused_data_connection_is_named_by_its_code_when_tls13_tickets_ran_out() {
        let refused =
            |line: &str, ran_out| map_data("reading /d/425.txt", FtpError::UnexpectedResponse(resp(line)), ran_out);
        for line in ["425 Can't open data connection.", "522 SSL connection failed: session reuse required"] {
            let named = refused(line, true);
            assert!(matches!(named, RemoteError::Connection(_)) && named.is_transient(), "{named:?}");
            assert_eq!(
                named.to_string(),
                format!(
                    "reading /d/425.txt: server said \"{line}\": the server refused a data connection whose TLS \
                     session did not resume the control connection's (it hands out too few TLS 1.3 tickets); \
                     sessions from now on use TLS 1.2"
                )
            );
            assert_eq!(refused(line, false).to_string(), map_reply("reading /d/425.txt", &resp(line)).to_string());
        }
        // A name with 425 in it is no reply code.
        let other = refused("426 Failure reading network stream.", true);
        assert_eq!(
            other.to_string(),
            map_reply("reading /d/425.txt", &resp("426 Failure reading network stream.")).to_string()
        );
    }

    #[test]
    fn multi_line_replies_quote_the_last_line() {
        assert_eq!(text(&resp("550-First\r\n550 Second\r\n")), "550 Second");
    }

    #[test]
    fn an_overlong_command_line_is_a_name_too_long() {
        let err = map_reply("uploading x", &resp("500 Input line too long."));
        assert!(matches!(err, RemoteError::NameTooLong(_)), "{err:?}");
        assert!(matches!(map_reply("x", &resp("500 Unknown command.")), RemoteError::Unsupported(_)));
    }
}
