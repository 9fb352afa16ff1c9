//! What the kernel knows about a data connection's sockets: bytes sent and not yet taken by
//! the server, bytes arrived and not yet read, and the receive window. Uploads use it to wait
//! until the server has every byte; downloads to start with a small window.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use super::session::Transfer;

/// Bytes a socket's queue holds, by `request`: `TIOCOUTQ` (sent, not acknowledged yet) or
/// `FIONREAD` (arrived, not read yet).
fn queued(socket: &TcpStream, request: libc::Ioctl) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: both requests write one int for a socket descriptor we hold open.
    let ok = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut queued) } == 0;
    ok.then_some(queued.max(0) as usize)
}

/// Bytes written to a data connection that the server's side has not taken (acknowledged) yet.
pub fn unsent(transfer: &Transfer) -> Option<usize> {
    queued(transfer.get_ref().get_ref(), libc::TIOCOUTQ)
}

/// Bytes that have arrived on a socket and are not read yet (with TLS: still encrypted, so a
/// little more than the plain bytes they hold).
pub fn received(socket: &TcpStream) -> usize {
    queued(socket, libc::FIONREAD).unwrap_or(0)
}

/// Caps how much a download's data connection lets the server send ahead of what we have read
/// (`TCP_WINDOW_CLAMP`): a reader that stops early then costs the server little. Raising it
/// later lets the window (auto-tuned as usual) grow again. False where the system refuses.
pub fn clamp_receive_window(transfer: &Transfer, bytes: u32) -> bool {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads one int from a live local for a socket descriptor we hold open.
    unsafe {
        libc::setsockopt(
            transfer.get_ref().get_ref().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_WINDOW_CLAMP,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// How long a server may take to read what its kernel accepted from an upload but it has not
/// read yet: at most a few MiB (receive buffers), at no less than 64 KiB/s.
pub fn time_to_read_buffered(sent: u64) -> Duration {
    const MOST_BUFFERED: u64 = 16 << 20;
    const SLOWEST_READ: u64 = 64 << 10;
    Duration::from_secs_f64(sent.min(MOST_BUFFERED) as f64 / SLOWEST_READ as f64)
}

/// A send queue this short at the end of an upload is left to the final reply's own timeout:
/// any server takes it within --io-timeout, and small files (most uploads) never wait here.
const LEFT_FOR_THE_REPLY: usize = 64 << 10;

/// Returns once the server's side has taken every byte written to an upload's data connection
/// (the kernel's send queue is empty), unless little was left to begin with
/// ([`LEFT_FOR_THE_REPLY`]). A slow server is waited for as long as it keeps taking bytes;
/// only `io_timeout` without progress is an error. Stops at once when `control_spoke` says
/// the server answered or hung up on the control connection (its reply tells the rest).
pub fn wait_until_taken(transfer: &Transfer, io_timeout: Duration, control_spoke: impl Fn() -> bool) -> io::Result<()> {
    let (mut least, mut since, mut pause) = (usize::MAX, std::time::Instant::now(), Duration::from_micros(250));
    loop {
        // When the kernel cannot tell, the final reply's own timeout rules.
        let Some(queued) = unsent(transfer) else { return Ok(()) };
        if queued == 0 || (least == usize::MAX && queued <= LEFT_FOR_THE_REPLY) || control_spoke() {
            return Ok(());
        }
        if queued < least {
            (least, since) = (queued, std::time::Instant::now());
        } else if since.elapsed() >= io_timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server took none of the last {queued} bytes for {io_timeout:?} (--io-timeout)"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}
