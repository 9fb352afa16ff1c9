//! Unit tests of the FTP remote's own helpers: pipelined batches, link targets, listings.

use super::times::pipeline_batches;
use super::*;

#[test]
fn pipelined_batches_are_bounded_by_count_and_bytes() {
    let short: Vec<String> = (0..150).map(|i| format!("/d/{i}")).collect();
    assert_eq!(pipeline_batches(&short), vec![0..64, 64..128, 128..150]);
    let long: Vec<String> = (0..10).map(|i| format!("/{i}{}", "x".repeat(5000))).collect();
    let b = pipeline_batches(&long);
    assert_eq!(b, vec![0..3, 3..6, 6..9, 9..10]);
    let huge = vec!["y".repeat(40_000)];
    assert_eq!(pipeline_batches(&huge), vec![0..1], "one at least");
    assert!(pipeline_batches(&[]).is_empty());
}

#[test]
fn absolute_link_targets_inside_the_mount_become_relative() {
    assert_eq!(relative_link("", "/a/b", "/a/c/file").as_deref(), Some("../c/file"));
    assert_eq!(relative_link("", "/", "/x").as_deref(), Some("x"));
    assert_eq!(relative_link("/home/u", "/home/u/d", "/home/u/f").as_deref(), Some("../f"));
    assert_eq!(relative_link("/home/u", "/home/u/d", "/etc/passwd"), None, "outside the mount: left as is");
    assert_eq!(relative_link("", "/a", "relative/already"), None);
}

#[test]
fn listings_skip_garbage_and_keep_real_entries() {
    let lines: listing::Lines = [
        "total 8",
        "-rw-r--r--    1 1001     1001           12 Nov 24 22:54 a file.txt",
        "this is not a listing line",
        "drwxr-xr-x    2 1001     1001         4096 Jan 05  2023 Old Dir",
    ]
    .iter()
    .collect();
    let entries = parse_listing("/", &lines, false);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a file.txt", "Old Dir"]);
    assert_eq!(entries[0].size, 12);
}
