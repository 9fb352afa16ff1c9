//! Inode numbers for remote paths. A node is known by its parent and name, so renaming a
//! directory later moves its whole subtree by changing one node.
//!
//! The table holds a node for every inode the kernel references, and only those: a
//! million-file walk with `ls -lR` makes a million of them, so a node is small (a slot of 24
//! bytes plus its name, and 4 bytes in the name index), numbers of forgotten nodes are used
//! again, and the table gives its memory back when the kernel forgets (see `shrink`).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// The inode number of the mount's root (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;
/// Parent of nodes whose name was removed; `path` of such a node (or below it) is `None`.
const DETACHED: u32 = u32::MAX;

struct Node {
    /// The parent's slot, or [`DETACHED`].
    parent: u32,
    /// How many times the kernel was told about this node and has not forgotten it
    /// (saturating: a count this high is never forgotten, which is safe).
    lookups: u32,
    name: Box<str>,
}

/// Inode numbers for the paths the kernel knows, with how often it was told each (freed on
/// `forget`); local only, nothing here talks to the server.
pub struct InodeTable {
    /// The node of inode `n` is in slot `n - 1` (the root in slot 0); `None`: free.
    slots: Vec<Option<Node>>,
    /// Free slots below `slots.len()`, reused before the table grows.
    free: Vec<u32>,
    /// Slots of attached nodes, by (parent, name).
    by_name: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Default for InodeTable {
    fn default() -> Self {
        let root = Node { parent: 0, lookups: 1, name: "".into() };
        InodeTable { slots: vec![Some(root)], free: Vec::new(), by_name: HashTable::new(), hasher: Default::default() }
    }
}

fn slot_of(ino: u64) -> Option<u32> {
    ino.checked_sub(1).and_then(|s| u32::try_from(s).ok())
}

fn ino_of(slot: u32) -> u64 {
    u64::from(slot) + 1
}

/// The name index's hash of the node in `slot` (by parent and name), for the index to move
/// its entries when it grows or shrinks.
fn slot_hash(hasher: &DefaultHashBuilder, slots: &[Option<Node>], slot: u32) -> u64 {
    let n = slots[slot as usize].as_ref().expect("indexed slots are live");
    hasher.hash_one((n.parent, &*n.name))
}

impl InodeTable {
    /// The inode of `name` in `parent`, created if new. `lookup` counts a kernel reference.
    pub fn get_or_insert(&mut self, parent: u64, name: &str, lookup: bool) -> u64 {
        let parent = slot_of(parent).filter(|&p| self.node(p).is_some()).unwrap_or(DETACHED);
        let slot = match self.slot(parent, name) {
            Some(slot) => slot,
            None => {
                let node = Node { parent, lookups: 0, name: name.into() };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(node);
                        slot
                    }
                    None => {
                        self.slots.push(Some(node));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index(slot);
                slot
            }
        };
        if lookup {
            if let Some(n) = self.slots[slot as usize].as_mut() {
                n.lookups = n.lookups.saturating_add(1);
            }
        }
        ino_of(slot)
    }

    /// The inode of `name` in `parent`, if there is one.
    pub fn find(&self, parent: u64, name: &str) -> Option<u64> {
        self.slot(slot_of(parent)?, name).map(ino_of)
    }

    /// The path of `ino` relative to the mount root (`""` for the root).
    pub fn path(&self, ino: u64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = slot_of(ino)?;
        while cur != 0 {
            let node = self.node(cur)?;
            parts.push(&*node.name);
            cur = node.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The kernel dropped `n` references; forget the node when none are left. Returns whether
    /// the node went away.
    pub fn forget(&mut self, ino: u64, n: u64) -> bool {
        let Some(slot) = slot_of(ino).filter(|&s| s != 0) else { return false };
        let Some(node) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else { return false };
        if node.lookups == u32::MAX {
            return false;
        }
        node.lookups = node.lookups.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        if node.lookups > 0 {
            return false;
        }
        self.unindex(slot);
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.shrink();
        true
    }

    /// Moves the node at `parent/name` (if known) to `new_parent/new_name`; a node that was at
    /// the destination is detached (its path no longer resolves).
    pub fn rename(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        self.detach(new_parent, new_name);
        let (Some(parent), Some(new_parent)) = (slot_of(parent), slot_of(new_parent)) else { return };
        if let Some(slot) = self.slot(parent, name) {
            self.unindex(slot);
            if let Some(node) = self.slots[slot as usize].as_mut() {
                node.parent = new_parent;
                node.name = new_name.into();
            }
            self.index(slot);
        }
    }

    /// Unlinks `parent/name`: the node stays for open references but has no path any more.
    pub fn detach(&mut self, parent: u64, name: &str) {
        let Some(parent) = slot_of(parent) else { return };
        if let Some(slot) = self.slot(parent, name) {
            self.unindex(slot);
            if let Some(node) = self.slots[slot as usize].as_mut() {
                node.parent = DETACHED;
            }
        }
    }

    /// Nodes in the table (the root included).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether the table holds no node (never, while the root is in it).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn node(&self, slot: u32) -> Option<&Node> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn hash(&self, parent: u32, name: &str) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    fn slot(&self, parent: u32, name: &str) -> Option<u32> {
        let slots = &self.slots;
        let same = |&s: &u32| slots[s as usize].as_ref().is_some_and(|n| n.parent == parent && &*n.name == name);
        self.by_name.find(self.hash(parent, name), same).copied()
    }

    fn index(&mut self, slot: u32) {
        let node = self.slots[slot as usize].as_ref().expect("a live slot");
        if node.parent == DETACHED {
            return;
        }
        let hash = self.hash(node.parent, &node.name);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_name.insert_unique(hash, slot, |&s| slot_hash(hasher, slots, s));
    }

    fn unindex(&mut self, slot: u32) {
        let node = self.slots[slot as usize].as_ref().expect("a live slot");
        if node.parent == DETACHED {
            return;
        }
        let hash = self.hash(node.parent, &node.name);
        if let Ok(entry) = self.by_name.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
    }

    /// Gives memory back as nodes go: free slots at the end are dropped (when the last slot
    /// goes, which in any order of forgetting happens rarely until the table is nearly empty),
    /// and the containers shrink once they are four times bigger than what is left. A walk's
    /// million nodes, forgotten, cost nothing.
    fn shrink(&mut self) {
        if self.slots.last().is_some_and(Option::is_none) {
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
            let len = self.slots.len();
            self.free.retain(|&s| (s as usize) < len);
        }
        let len = self.slots.len();
        if self.slots.capacity() >= 1024 && len * 4 < self.slots.capacity() {
            self.slots.shrink_to(len * 2);
            self.free.shrink_to(self.free.len() * 2);
            crate::memory::trim_soon();
        }
        if self.by_name.capacity() >= 1024 && self.by_name.len() * 4 < self.by_name.capacity() {
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.by_name.shrink_to(self.by_name.len() * 2, |&s| slot_hash(hasher, slots, s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_from_parents() {
        let mut t = InodeTable::default();
        let a = t.get_or_insert(ROOT, "a dir", true);
        let b = t.get_or_insert(a, "Ünï.txt", true);
        assert_eq!(t.path(ROOT).as_deref(), Some(""));
        assert_eq!(t.path(b).as_deref(), Some("a dir/Ünï.txt"));
        assert_eq!(t.get_or_insert(a, "Ünï.txt", false), b, "same name, same inode");
    }

    #[test]
    fn renames_move_subtrees_and_unlinks_detach() {
        let mut t = InodeTable::default();
        let a = t.get_or_insert(ROOT, "a", true);
        let f = t.get_or_insert(a, "f", true);
        let b = t.get_or_insert(ROOT, "b", true);
        t.rename(ROOT, "a", b, "moved");
        assert_eq!(t.path(f).as_deref(), Some("b/moved/f"));
        assert_eq!(t.find(b, "moved"), Some(a));
        assert_eq!(t.find(ROOT, "a"), None);
        let g = t.get_or_insert(b, "g", true);
        t.rename(b, "moved", b, "g");
        assert_eq!(t.path(g), None, "replaced node is detached");
        assert_eq!(t.path(f).as_deref(), Some("b/g/f"));
        t.detach(b, "g");
        assert_eq!(t.path(f), None);
        assert!(t.forget(g, 1), "a detached node is forgotten like any other");
    }

    #[test]
    fn forgotten_nodes_go_away() {
        let mut t = InodeTable::default();
        let a = t.get_or_insert(ROOT, "a", true);
        t.get_or_insert(ROOT, "a", true);
        assert!(!t.forget(a, 1));
        assert!(t.path(a).is_some());
        assert!(t.forget(a, 1));
        assert!(t.path(a).is_none());
        assert_eq!(t.find(ROOT, "a"), None);
        let b = t.get_or_insert(ROOT, "b", true);
        assert_eq!(t.path(b).as_deref(), Some("b"), "a new node (its number may be reused)");
        assert!(!t.forget(ROOT, 1), "the root stays");
    }

    #[test]
    fn nodes_of_a_big_walk_forgotten_give_their_memory_back() {
        let mut t = InodeTable::default();
        let dirs: Vec<u64> = (0..100).map(|d| t.get_or_insert(ROOT, &format!("d{d:03}"), true)).collect();
        let files: Vec<u64> =
            (0..200_000).map(|i| t.get_or_insert(dirs[i % 100], &format!("file-{i:07}.jpg"), true)).collect();
        assert_eq!(t.len(), 200_101);
        assert_eq!(t.path(files[123_456]).as_deref(), Some("d056/file-0123456.jpg"));
        // Forgotten in an order the kernel might use, the last-made node somewhere in the middle.
        let mut order: Vec<u64> = files.clone();
        order.rotate_left(77_777);
        let big = t.slots.capacity();
        for &f in &order {
            assert!(t.forget(f, 1));
        }
        assert_eq!(t.len(), 101);
        assert!(t.slots.capacity() < big / 100, "slots shrank: {} of {big}", t.slots.capacity());
        assert!(t.by_name.capacity() < 1024, "the index shrank: {}", t.by_name.capacity());
        assert_eq!(t.path(dirs[99]).as_deref(), Some("d099"));
        let again = t.get_or_insert(dirs[1], "new", true);
        assert_eq!(t.path(again).as_deref(), Some("d001/new"));
    }
}
