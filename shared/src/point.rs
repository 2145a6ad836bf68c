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

/// Where a point is: WGS-84 decimal degrees, as given (never shifted to another datum; Chinese
/// web maps' GCJ-02 values are accepted as they come, a few hundred metres off).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Location {
    pub lat: f64,
    pub long: f64,
}

/// A position as sent: either part may be missing or not a number.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LocationInput {
    #[schema(value_type = Option<f64>)]
    pub lat: Option<serde_json::Value>,
    #[schema(value_type = Option<f64>)]
    pub long: Option<serde_json::Value>,
}

impl LocationInput {
    /// Checks the range and that the position lies in the district's box (`bbox`, see
    /// [`crate::orgs::District`]); the message goes on `point.location`.
    pub fn check(&self, bbox: Option<[f64; 4]>) -> Result<Location, String> {
        let number = |v: &Option<serde_json::Value>, what: &str| {
            v.as_ref()
                .and_then(serde_json::Value::as_f64)
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{what} must be a number (WGS-84 decimal degrees)"))
        };
        let lat = number(&self.lat, "lat")?;
        let long = number(&self.long, "long")?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&long) {
            return Err("lat must lie in [-90, 90] and long in [-180, 180]".into());
        }
        if let Some([w, s, e, n]) = bbox {
            if !(s..=n).contains(&lat) || !(w..=e).contains(&long) {
                return Err(format!(
                    "({lat}, {long}) lies outside the district (lat {s}..{n}, long {w}..{e}); \
                     positions are WGS-84, latitude and longitude in decimal degrees"
                ));
            }
        }
        Ok(Location { lat, long })
    }
}

#[cfg(test)]
mod location_tests {
    use super::*;
    use serde_json::json;

    const TONGZHOU: Option<[f64; 4]> = Some([116.48, 39.55, 117.00, 40.08]);

    fn input(lat: serde_json::Value, long: serde_json::Value) -> LocationInput {
        LocationInput {
            lat: Some(lat),
            long: Some(long),
        }
    }

    #[test]
    fn positions_are_checked_for_range_and_district() {
        let ok = input(json!(39.909), json!(116.656))
            .check(TONGZHOU)
            .unwrap();
        assert_eq!(
            ok,
            Location {
                lat: 39.909,
                long: 116.656
            }
        );
        // GCJ-02 from a Chinese web map is a few hundred metres off: still inside, kept as given.
        let gcj = input(json!(39.9104), json!(116.6621))
            .check(TONGZHOU)
            .unwrap();
        assert_eq!(gcj.long, 116.6621);
        assert!(input(json!(91), json!(116.6)).check(TONGZHOU).is_err());
        assert!(input(json!(39.9), json!(-181)).check(None).is_err());
        assert!(
            input(json!(116.656), json!(39.909))
                .check(TONGZHOU)
                .is_err(),
            "swapped"
        );
        assert!(
            input(json!(31.23), json!(121.47)).check(TONGZHOU).is_err(),
            "Shanghai"
        );
        assert!(input(json!("39.9"), json!(116.6)).check(TONGZHOU).is_err());
        assert!(LocationInput {
            lat: None,
            long: Some(json!(116.6))
        }
        .check(None)
        .is_err());
    }
}
