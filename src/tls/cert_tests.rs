use super::*;

#[test]
fn host_names_match_exactly_or_by_one_wildcard_label() {
    assert!(name_matches("ftp.example.com", "FTP.example.com"));
    assert!(name_matches("*.example.com", "ftp.example.com"));
    assert!(!name_matches("*.example.com", "a.b.example.com"), "a wildcard is one label");
    assert!(!name_matches("*.example.com", "example.com"));
    assert!(name_matches("127.0.0.1", "127.0.0.1"));
}

#[test]
fn fingerprints_are_normalised() {
    let hex = "AB".repeat(32);
    let want = vec!["ab"; 32].join(":");
    assert_eq!(normalize_fingerprint(&hex).unwrap(), want);
    assert_eq!(normalize_fingerprint(&want.to_uppercase()).unwrap(), want);
    assert!(normalize_fingerprint("abc").is_err());
    assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
}
