//! `read_lines`: how listing lines are split, trimmed, decoded and bounded.

use super::read_lines;
use crate::names::Charset;

#[test]
fn lines_are_split_trimmed_and_decoded() {
    let mut input: &[u8] = b"a\r\n\r\nb c\n\xffd\ne";
    let lines = read_lines(&mut input, Charset::Utf8, 1000, 100, &mut |_| {}).unwrap();
    assert_eq!(lines, ["a", "b c", "\u{efff}d", "e"], "an undecodable byte is kept, escaped");
    let mut input: &[u8] = b"caf\xe9\r\n";
    assert_eq!(read_lines(&mut input, Charset::Latin1, 1000, 100, &mut |_| {}).unwrap(), ["café"]);
}

#[test]
fn a_server_cannot_make_a_listing_grow_without_bound() {
    // An endless line, and endless lines: both end with an error, having held little.
    let mut endless = std::io::Read::take(std::io::repeat(b'x'), u64::MAX);
    let mut r = std::io::BufReader::new(&mut endless);
    let err = read_lines(&mut r, Charset::Utf8, 1 << 20, 4096, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let mut many = std::io::Read::take(std::io::repeat(b'\n'), u64::MAX);
    let mut r = std::io::BufReader::new(&mut many);
    assert_eq!(
        read_lines(&mut r, Charset::Utf8, 1 << 20, 4096, &mut |_| {}).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
}
