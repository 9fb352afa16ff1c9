//! The window of recent bytes: what it serves, spans and keeps, and its buffers used again.

use super::*;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn the_window_serves_pieces_and_spans_them() {
    let d = data(3 * WINDOW);
    let mut w = Window::default();
    let piece = 300 * 1024;
    for at in (0..d.len()).step_by(piece) {
        let mut buf = w.buffer(piece.min(d.len() - at));
        let n = buf.len();
        buf.copy_from_slice(&d[at..at + n]);
        w.push(at as u64, buf.into());
    }
    let end = d.len() as u64;
    assert_eq!(w.end(), Some(end));
    assert!(w.held >= WINDOW && w.held < WINDOW + piece, "{}", w.held);
    let start = end - w.held as u64;
    assert!(w.get(start - 1, 10).is_empty(), "before the window");
    assert!(w.get(end, 10).is_empty(), "past it");
    for (at, len) in [(start, 100), (start + piece as u64 - 50, 100), (start + 10, 3 * piece), (end - 20, 100)] {
        let want = &d[at as usize..(at as usize + len).min(d.len())];
        assert_eq!(w.get(at, len), want, "at {at}, {len} bytes");
    }
    // A buffer that leaves the window is read into again.
    let first = w.chunks[0].1.as_ptr();
    w.push(end, Bytes::from(vec![0; piece]));
    let reused = w.buffer(10);
    assert_eq!(reused.as_ptr(), first);
    // Not where the last piece ended: the window starts again there.
    w.push(7, Bytes::from(vec![1, 2, 3]));
    assert_eq!((w.held, w.end()), (3, Some(10)));
    assert_eq!(w.get(8, 10), &[2u8, 3][..]);
}
