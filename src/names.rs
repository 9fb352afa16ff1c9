//! How file names cross the mount's two borders without loss: bytes on the FTP wire (in the
//! server's charset) ↔ text inside ftpmount ↔ bytes of a local (Linux) file name.
//!
//! Inside, names are `String`s. A byte that the charset cannot decode — a Latin-1 `é` on a
//! server read as UTF-8, say — becomes one "escape" character in U+EF80..U+EFFF (a private-use
//! block, the same convention as MirBSD's OPTU-8) and goes back out as the same byte, both to
//! the kernel and to the server. So such files can be listed, read, renamed and deleted even
//! when their names are not text. Escape characters that arrive as valid UTF-8 are escaped
//! byte by byte too, which keeps every mapping reversible. No I/O here.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The charset file names use on the server (`--encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    #[default]
    Utf8,
    /// ISO-8859-1: every byte is the code point of the same number.
    Latin1,
    /// Windows-1252: Latin-1 with printable characters in 0x80..0x9F.
    Cp1252,
}

impl std::str::FromStr for Charset {
    type Err = String;
    fn from_str(s: &str) -> Result<Charset, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf8" | "utf-8" => Ok(Charset::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => Ok(Charset::Latin1),
            "cp1252" | "windows-1252" => Ok(Charset::Cp1252),
            _ => Err(format!("unknown encoding '{s}': use utf8, latin1 (iso-8859-1) or cp1252 (windows-1252)")),
        }
    }
}

impl std::fmt::Display for Charset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Charset::Utf8 => "utf8",
            Charset::Latin1 => "latin1",
            Charset::Cp1252 => "cp1252",
        })
    }
}

const ESCAPES: u32 = 0xEF00;

fn escape(byte: u8) -> char {
    char::from_u32(ESCAPES + u32::from(byte)).expect("U+EF80..U+EFFF are characters")
}

/// The raw byte an escape character stands for.
fn escaped_byte(c: char) -> Option<u8> {
    let n = u32::from(c);
    (ESCAPES + 0x80..=ESCAPES + 0xFF).contains(&n).then(|| (n - ESCAPES) as u8)
}

/// Windows-1252's 0x80..0x9F; `None` where it defines no character.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('€'),
    None,
    Some('‚'),
    Some('ƒ'),
    Some('„'),
    Some('…'),
    Some('†'),
    Some('‡'),
    Some('ˆ'),
    Some('‰'),
    Some('Š'),
    Some('‹'),
    Some('Œ'),
    None,
    Some('Ž'),
    None,
    None,
    Some('‘'),
    Some('’'),
    Some('“'),
    Some('”'),
    Some('•'),
    Some('–'),
    Some('—'),
    Some('˜'),
    Some('™'),
    Some('š'),
    Some('›'),
    Some('œ'),
    None,
    Some('ž'),
    Some('Ÿ'),
];

/// Bytes as text, escaping what does not decode as UTF-8.
fn decode_utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !has_escapes(s) => return Cow::Borrowed(s),
        _ => {}
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if escaped_byte(c).is_some() {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(escape));
    }
    Cow::Owned(out)
}

/// Text as UTF-8 bytes, escape characters back to their bytes.
fn encode_utf8(text: &str) -> Cow<'_, [u8]> {
    if !has_escapes(text) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match escaped_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// A local file name as text. Never fails: bytes that are not UTF-8 are escaped.
pub fn from_os(name: &OsStr) -> Cow<'_, str> {
    decode_utf8(name.as_bytes())
}

/// Text as a local file name, escaped bytes restored.
pub fn to_os(text: &str) -> Cow<'_, OsStr> {
    match encode_utf8(text) {
        Cow::Borrowed(b) => Cow::Borrowed(OsStr::from_bytes(b)),
        Cow::Owned(v) => Cow::Owned(OsString::from_vec(v)),
    }
}

/// Whether text holds bytes that were not valid in the charset they came in.
pub fn has_escapes(text: &str) -> bool {
    text.chars().any(|c| escaped_byte(c).is_some())
}

impl Charset {
    /// Bytes from the server as text. Never fails.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => decode_utf8(bytes).into_owned(),
            Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
            Charset::Cp1252 => bytes
                .iter()
                .map(|&b| match b {
                    0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)].unwrap_or_else(|| escape(b)),
                    _ => char::from(b),
                })
                .collect(),
        }
    }

    /// Text as the bytes the server expects; the first character the charset has no byte for
    /// is the error.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, char> {
        if self == Charset::Utf8 {
            return Ok(encode_utf8(text).into_owned());
        }
        text.chars().map(|c| self.byte_for(c).ok_or(c)).collect()
    }

    fn byte_for(self, c: char) -> Option<u8> {
        if let Some(b) = escaped_byte(c) {
            return Some(b);
        }
        let n = u32::from(c);
        match self {
            Charset::Utf8 => None,
            Charset::Latin1 => u8::try_from(n).ok(),
            Charset::Cp1252 => match n {
                0..=0x7F | 0xA0..=0xFF => Some(n as u8),
                _ => CP1252_HIGH.iter().position(|&m| m == Some(c)).map(|i| 0x80 + i as u8),
            },
        }
    }

    /// Why `name` cannot be stored on the server, if it cannot.
    pub fn check(self, name: &str) -> Result<(), String> {
        match self.encode(name) {
            Ok(_) => Ok(()),
            Err(c) => Err(format!(
                "{name:?} contains '{c}', which the server's encoding ({self}) cannot represent; \
                 choose another name, or mount with --encoding utf8 if the server takes UTF-8"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_pass_through_unchanged() {
        for name in ["plain.txt", "café.txt", "日本語", "🎉 party"] {
            assert!(matches!(from_os(OsStr::new(name)), Cow::Borrowed(_)));
            assert_eq!(Charset::Utf8.decode(name.as_bytes()), name);
            assert_eq!(Charset::Utf8.encode(name).unwrap(), name.as_bytes());
            assert_eq!(to_os(name), OsStr::new(name));
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_survive_both_borders() {
        let latin1 = b"caf\xe9 \xff\xfe.txt";
        let text = Charset::Utf8.decode(latin1);
        assert!(has_escapes(&text));
        assert_eq!(Charset::Utf8.encode(&text).unwrap(), latin1);
        assert_eq!(to_os(&text).as_bytes(), latin1);
        assert_eq!(from_os(OsStr::from_bytes(latin1)), text);
    }

    #[test]
    fn escape_characters_that_arrive_as_text_stay_themselves() {
        let name = "a\u{ef80}b\u{efff}";
        let text = Charset::Utf8.decode(name.as_bytes());
        assert_ne!(text, name, "escaped byte by byte");
        assert_eq!(Charset::Utf8.encode(&text).unwrap(), name.as_bytes());
        assert_eq!(to_os(&from_os(OsStr::new(name))), OsStr::new(name));
    }

    #[test]
    fn every_byte_string_round_trips() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let len = (seed % 12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            for cs in [Charset::Utf8, Charset::Latin1, Charset::Cp1252] {
                let text = cs.decode(&bytes);
                assert_eq!(cs.encode(&text).unwrap(), bytes, "{cs} {bytes:?}");
            }
            assert_eq!(to_os(&from_os(OsStr::from_bytes(&bytes))).as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn legacy_charsets_decode_to_readable_text() {
        assert_eq!(Charset::Latin1.decode(b"na\xefve \xe9t\xe9"), "naïve été");
        assert_eq!(Charset::Cp1252.decode(b"\x80 \x93q\x94 \xe9"), "€ “q” é");
        assert_eq!(Charset::Cp1252.encode("€uro “é”").unwrap(), b"\x80uro \x93\xe9\x94");
        assert_eq!(Charset::Latin1.encode("été").unwrap(), b"\xe9t\xe9");
    }

    #[test]
    fn names_a_charset_cannot_hold_are_refused_with_the_character() {
        assert_eq!(Charset::Latin1.encode("a€"), Err('€'));
        assert_eq!(Charset::Cp1252.encode("日本"), Err('日'));
        let why = Charset::Latin1.check("x日.txt").unwrap_err();
        assert!(why.contains("'日'") && why.contains("latin1"), "{why}");
        assert!(Charset::Utf8.check("日本").is_ok());
    }

    #[test]
    fn charset_names() {
        assert_eq!("ISO-8859-1".parse::<Charset>(), Ok(Charset::Latin1));
        assert_eq!("windows-1252".parse::<Charset>(), Ok(Charset::Cp1252));
        assert_eq!("UTF-8".parse::<Charset>(), Ok(Charset::Utf8));
        assert!("ebcdic".parse::<Charset>().unwrap_err().contains("latin1"));
    }
}
