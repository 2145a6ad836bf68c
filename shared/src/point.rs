//! 点位: the identity of one basement, the same whichever service derives it.

use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// Folds the spellings of one place together: full-width and half-width forms (NFKC), spacing,
/// letter case, and the usual building suffixes (3号楼 = 3栋 = 3).
pub fn normalize(s: &str) -> String {
    let folded: String = s
        .nfkc()
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
}
