//! 点位: the identity of one basement, the same whichever service derives it.

use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// Unicode format characters: invisible, yet they make two spellings of one text differ
/// (zero-width spaces and joiners, bidi controls, the BOM, the soft hyphen, …).
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Text as people read it: format characters removed, then NFKC (CONTRACT §13). Required fields
/// are checked, and points derived, on this.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !is_format_char(*c))
        .collect::<String>()
        .nfkc()
        .collect()
}

/// Folds the spellings of one place together: format characters, full-width and half-width forms
/// (NFKC), spacing, letter case, and the usual building suffixes (3号楼 = 3栋 = 3).
pub fn normalize(s: &str) -> String {
    let folded: String = clean(s)
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    for suffix in ["号楼", "号", "栋", "幢", "楼"] {
        if let Some(rest) = folded.strip_suffix(suffix) {
            if !rest.is_empty() {
                return rest.to_string();
            }
        }
    }
    folded
}

const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b7d_4e58_a0c4_5f1e_2d3b_4c5a);

/// The same basement always gets the same id: a UUIDv5 of its normalised parts.
pub fn point_id(district: &str, community: &str, building: &str, basement: &str) -> Uuid {
    let key = [district, community, building, basement]
        .map(normalize)
        .join("\u{1f}");
    Uuid::new_v5(&POINT_NAMESPACE, key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_basement_spelled_differently_has_one_point_id() {
        let p = |c: &str, b: &str, base: &str| point_id("tongzhou", c, b, base);
        let a = p("园景阁西区", "3", "B1");
        assert_eq!(a, p("园景阁 西区", "３号楼", "ｂ１"));
        assert_eq!(a, p(" 园景阁西区 ", "3栋", "b 1"));
        assert_ne!(a, p("园景阁西区", "4", "B1"));
        assert_ne!(a, p("园景阁东区", "3", "B1"));
        assert_ne!(point_id("chaoyang", "园景阁西区", "3", "B1"), a);
    }

    #[test]
    fn invisible_characters_make_no_new_point_and_no_text() {
        let a = point_id("tongzhou", "园景阁西区", "3", "B1");
        for spelled in [
            "园景阁\u{200B}西区",
            "\u{FEFF}园景阁西区",
            "园景阁\u{202E}西区\u{202C}",
            "园\u{200D}景阁\u{2066}西区\u{2069}",
            "园景阁西区\u{00AD}",
        ] {
            assert_eq!(point_id("tongzhou", spelled, "3", "B1"), a, "{spelled:?}");
        }
        assert_eq!(clean("\u{200B}\u{200C}\u{FEFF}"), "");
        assert_eq!(clean("ＡＢ\u{200B}1"), "AB1");
    }
}
