//! Inode numbers for remote paths. A node is known by its parent and name, so renaming a
//! directory later moves its whole subtree by changing one node.

use std::collections::HashMap;

pub const ROOT: u64 = 1;
/// Parent of nodes whose name was removed; `path` of such a node (or below it) is `None`.
const DETACHED: u64 = 0;

struct Node {
    parent: u64,
    name: String,
    /// How many times the kernel was told about this node and has not forgotten it.
    lookups: u64,
}

pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_name: HashMap<(u64, String), u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node { parent: ROOT, name: String::new(), lookups: 1 });
        InodeTable { nodes, by_name: HashMap::new(), next: ROOT + 1 }
    }
}

impl InodeTable {
    /// The inode of `name` in `parent`, created if new. `lookup` counts a kernel reference.
    pub fn get_or_insert(&mut self, parent: u64, name: &str, lookup: bool) -> u64 {
        let key = (parent, name.to_string());
        let ino = match self.by_name.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.nodes.insert(ino, Node { parent, name: key.1.clone(), lookups: 0 });
                self.by_name.insert(key, ino);
                ino
            }
        };
        if lookup {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.lookups += 1;
            }
        }
        ino
    }

    /// The inode of `name` in `parent`, if there is one.
    pub fn find(&self, parent: u64, name: &str) -> Option<u64> {
        self.by_name.get(&(parent, name.to_string())).copied()
    }

    /// The path of `ino` relative to the mount root (`""` for the root).
    pub fn path(&self, ino: u64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.nodes.get(&cur)?;
            parts.push(node.name.as_str());
            cur = node.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The kernel dropped `n` references; forget the node when none are left.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present");
            self.by_name.remove(&(node.parent, node.name));
        }
    }

    /// Moves the node at `parent/name` (if known) to `new_parent/new_name`; a node that was at
    /// the destination is detached (its path no longer resolves).
    pub fn rename(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        self.detach(new_parent, new_name);
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = new_parent;
                node.name = new_name.to_string();
            }
            self.by_name.insert((new_parent, new_name.to_string()), ino);
        }
    }

    /// Unlinks `parent/name`: the node stays for open references but has no path any more.
    pub fn detach(&mut self, parent: u64, name: &str) {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = DETACHED;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
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
        let g = t.get_or_insert(b, "g", true);
        t.rename(b, "moved", b, "g");
        assert_eq!(t.path(g), None, "replaced node is detached");
        assert_eq!(t.path(f).as_deref(), Some("b/g/f"));
        t.detach(b, "g");
        assert_eq!(t.path(f), None);
    }

    #[test]
    fn forgotten_nodes_go_away() {
        let mut t = InodeTable::default();
        let a = t.get_or_insert(ROOT, "a", true);
        t.get_or_insert(ROOT, "a", true);
        t.forget(a, 1);
        assert!(t.path(a).is_some());
        t.forget(a, 1);
        assert!(t.path(a).is_none());
        assert_ne!(t.get_or_insert(ROOT, "a", true), a, "a new node after forget");
    }
}
