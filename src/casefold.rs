//! When two names are one name on a case-insensitive system (Windows, macOS, FAT/NTFS
//! volumes, IIS): Unicode full case folding plus normalisation. Pure functions, no I/O.

use std::collections::BTreeMap;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

/// How names are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Folding {
    /// Unicode full case folding and canonical equivalence: `Straße` = `STRASSE`, a composed
    /// `é` = `e` + combining accent (what macOS and most case-insensitive targets treat as one).
    #[default]
    Unicode,
    /// Only A-Z = a-z (servers that fold ASCII letters and nothing else).
    Ascii,
}

/// The key two names share exactly when the folding makes them one name.
pub fn fold(name: &str, folding: Folding) -> String {
    match folding {
        // The same result, without the tables: ASCII is its own NFD and NFC, and folds to
        // lower case (most names; folding 100,000 of them is a listing's largest cost).
        Folding::Unicode if name.is_ascii() => name.to_ascii_lowercase(),
        // Canonical caseless matching (Unicode §3.13): fold the decomposed form; NFC at the
        // end keeps keys short and comparable.
        Folding::Unicode => caseless::default_case_fold_str(&name.nfd().collect::<String>()).nfc().collect(),
        Folding::Ascii => name.to_ascii_lowercase(),
    }
}

/// True when `a` and `b` are different names that fold to the same one.
pub fn collide(a: &str, b: &str, folding: Folding) -> bool {
    a != b && fold(a, folding) == fold(b, folding)
}

/// Every group of two or more distinct names that fold to one, each group sorted, groups in
/// the order of their folded name.
pub fn collision_groups<'a>(names: impl IntoIterator<Item = &'a str>, folding: Folding) -> Vec<Vec<&'a str>> {
    let mut by_key: BTreeMap<String, Vec<&'a str>> = BTreeMap::new();
    for name in names {
        by_key.entry(fold(name, folding)).or_default().push(name);
    }
    by_key
        .into_values()
        .filter_map(|mut group| {
            group.sort_unstable();
            group.dedup();
            (group.len() > 1).then_some(group)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Folding::{Ascii, Unicode};

    #[test]
    fn ascii_letters_fold_in_both_modes() {
        for f in [Unicode, Ascii] {
            assert!(collide("MyFile.txt", "myfile.txt", f));
            assert!(collide("Docs", "DOCS", f));
            assert!(!collide("same", "same", f), "a name does not collide with itself");
            assert!(!collide("file1", "file2", f));
        }
    }

    #[test]
    fn the_ascii_shortcut_folds_as_the_full_unicode_way_does() {
        let full =
            |s: &str| -> String { caseless::default_case_fold_str(&s.nfd().collect::<String>()).nfc().collect() };
        let every: String = (0u8..128).map(char::from).collect();
        for name in [every.as_str(), "MyFile.TXT", "IMG_0001.JPG", "a-B_c.D~1", "\u{7f}\t"] {
            assert_eq!(fold(name, Unicode), full(name), "{name:?}");
        }
    }

    #[test]
    fn german_sharp_s_folds_to_ss_only_under_unicode() {
        assert!(collide("Straße", "STRASSE", Unicode));
        assert!(collide("straße", "strasse", Unicode));
        assert!(collide("ẞ", "ss", Unicode), "capital sharp s");
        assert!(!collide("Straße", "STRASSE", Ascii));
    }

    #[test]
    fn turkish_dotless_i_stays_distinct_under_full_folding() {
        // Full (non-Turkic) folding: I -> i, ı stays ı, İ -> i + combining dot above.
        assert!(!collide("ı", "i", Unicode));
        assert!(!collide("ı", "I", Unicode));
        assert!(!collide("İ", "i", Unicode));
        assert!(!collide("İ", "I", Unicode));
        assert!(collide("DİYARBAKIR", "di\u{307}yarbakir", Unicode));
        assert!(!collide("DİYARBAKIR", "diyarbakır", Unicode));
    }

    #[test]
    fn greek_final_sigma_folds_with_sigma() {
        assert!(collide("ΣΊΣΥΦΟΣ", "σίσυφος", Unicode));
        assert!(collide("ς", "σ", Unicode));
        assert!(collide("ς", "Σ", Unicode));
        assert!(!collide("ΣΊΣΥΦΟΣ", "σίσυφος", Ascii));
    }

    #[test]
    fn composed_and_decomposed_accents_are_one_name() {
        let composed = "caf\u{e9}.txt";
        let decomposed = "cafe\u{301}.txt";
        assert!(collide(composed, decomposed, Unicode));
        assert!(collide("CAF\u{c9}.TXT", decomposed, Unicode));
        assert!(!collide(composed, decomposed, Ascii), "ASCII folding leaves other bytes alone");
        assert!(!collide("cafe.txt", composed, Unicode), "an accent is not a case");
    }

    #[test]
    fn groups_list_each_set_of_colliding_names_once() {
        let names = ["readme", "Docs", "README", "docs", "b", "DOCS", "Readme", "other"];
        assert_eq!(
            collision_groups(names, Unicode),
            vec![vec!["DOCS", "Docs", "docs"], vec!["README", "Readme", "readme"]]
        );
        assert!(collision_groups(["a", "b", "c"], Unicode).is_empty());
        assert!(collision_groups(["a", "a"], Unicode).is_empty(), "one name twice is no collision");
    }
}
