//! Where a read's bytes live: [`Bytes`] shared between a reply and the window of recent
//! bytes (no copy), the [`Window`] itself, and [`Gather`] for a reply made of several pieces.

use super::*;

/// Bytes for a reply. Bytes read from the server are shared with the window of recent bytes
/// (see [`Window`]) rather than copied: a read of a file at full speed moves every byte once
/// from the TLS stream into a buffer and from there into the kernel.
#[derive(Clone, Debug, Default)]
pub struct Bytes {
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Bytes {
    /// The first `n` bytes (all if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.end = self.end.min(self.start + n);
    }

    /// The bytes at `from..to` of these.
    pub(super) fn slice(&self, from: usize, to: usize) -> Bytes {
        Bytes { buf: self.buf.clone(), start: self.start + from, end: self.start + to.min(self.len()) }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        let end = v.len();
        Bytes { buf: Arc::new(v), start: 0, end }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Bytes {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Bytes {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

/// The bytes most recently read from the server. The kernel sends a file's read-ahead as
/// several requests at once, which reach us slightly out of order; serving the late ones from
/// here keeps one stream going instead of restarting the transfer for each (a restart costs
/// several round trips). Kept as the buffers they were read into (no copy), and buffers that
/// leave it are used again for the next reads (no allocation, no zeroing).
#[derive(Default)]
pub(super) struct Window {
    /// Consecutive pieces of the file: each starts where the one before ends.
    chunks: VecDeque<(u64, Bytes)>,
    held: usize,
    /// Buffers no one else holds any more, for the next reads.
    spare: Vec<Vec<u8>>,
}

/// How much of the recent past a window keeps (the kernel's read-ahead is at most 1 MiB).
pub(super) const WINDOW: usize = 2 << 20;
/// How many unused buffers a window keeps for the next reads.
const SPARE: usize = 4;

impl Window {
    pub(super) fn end(&self) -> Option<u64> {
        self.chunks.back().map(|(at, b)| at + b.len() as u64)
    }

    /// The bytes at `offset..offset + len` that the window holds, from `offset` on: shared
    /// when one piece holds them all, else copied together.
    pub(super) fn get(&self, offset: u64, len: usize) -> Bytes {
        let Some(i) = self.chunks.iter().position(|(at, b)| offset >= *at && offset < at + b.len() as u64) else {
            return Bytes::default();
        };
        let (at, first) = &self.chunks[i];
        let from = (offset - at) as usize;
        if first.len() - from >= len || i + 1 == self.chunks.len() {
            return first.slice(from, from + len);
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&first[from..]);
        for (_, b) in self.chunks.iter().skip(i + 1) {
            if out.len() >= len {
                break;
            }
            out.extend_from_slice(&b[..(len - out.len()).min(b.len())]);
        }
        out.into()
    }

    /// Records bytes read from the server at `at`.
    pub(super) fn push(&mut self, at: u64, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.end() != Some(at) {
            while let Some((_, old)) = self.chunks.pop_front() {
                self.recycle(old);
            }
            self.held = 0;
        }
        self.held += bytes.len();
        self.chunks.push_back((at, bytes));
        while self.chunks.front().is_some_and(|(_, b)| self.held - b.len() >= WINDOW) {
            let (_, old) = self.chunks.pop_front().expect("just seen");
            self.held -= old.len();
            self.recycle(old);
        }
    }

    pub(super) fn recycle(&mut self, b: Bytes) {
        if self.spare.len() < SPARE {
            if let Ok(buf) = Arc::try_unwrap(b.buf) {
                self.spare.push(buf);
            }
        }
    }

    /// A buffer of `len` bytes to read into (a spare one when there is one).
    pub(super) fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        // Only bytes never used before are zeroed (a spare buffer was filled already).
        buf.resize(len, 0);
        buf
    }
}

/// The pieces of one reply: the first kept as it is, more copied together.
#[derive(Default)]
pub(super) struct Gather {
    first: Bytes,
    more: Vec<u8>,
    pub(super) len: usize,
}

impl Gather {
    pub(super) fn add(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        if self.first.is_empty() {
            self.first = b;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.first);
            }
            self.more.extend_from_slice(&b);
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        if self.more.is_empty() { self.first } else { self.more.into() }
    }
}

#[cfg(test)]
#[path = "buffers_tests.rs"]
mod tests;
