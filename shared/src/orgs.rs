//! The organisation directory (districts and their streets/townships) and the category catalog,
//! shipped as data files and loaded at start-up.

use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Street {
    pub code: String,
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct District {
    pub code: String,
    pub name: String,
    pub streets: Vec<Street>,
    /// WGS-84 box `[min_long, min_lat, max_long, max_lat]` around the district, with a margin of a
    /// few kilometres: a point's position must lie inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

/// The directory, as served by `GET /v1/orgs`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Directory {
    pub districts: Vec<District>,
}

#[derive(Clone, Debug)]
pub struct Orgs(Arc<Directory>);

const BUILTIN_ORGS: &str = include_str!("../data/orgs.json");
const BUILTIN_CATALOG: &str = include_str!("../data/catalog.json");

impl Orgs {
    /// The shipped directory, or the file named by `QINGLING_ORGS_FILE`.
    pub fn load() -> anyhow::Result<Self> {
        let text = match std::env::var("QINGLING_ORGS_FILE") {
            Ok(path) if !path.is_empty() => {
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?
            }
            _ => BUILTIN_ORGS.to_string(),
        };
        Ok(Self(Arc::new(
            serde_json::from_str(&text).context("the organisation directory is not valid")?,
        )))
    }

    pub fn directory(&self) -> &Directory {
        &self.0
    }

    pub fn district(&self, code: &str) -> Option<&District> {
        self.0.districts.iter().find(|d| d.code == code)
    }

    pub fn street(&self, district: &str, street: &str) -> Option<&Street> {
        self.district(district)?
            .streets
            .iter()
            .find(|s| s.code == street)
    }

    /// The district a street belongs to (street codes are unique across the directory).
    pub fn district_of(&self, street: &str) -> Option<&District> {
        self.0
            .districts
            .iter()
            .find(|d| d.streets.iter().any(|s| s.code == street))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Category {
    pub code: String,
    pub name: String,
    pub group: String,
    pub description: String,
    pub ledger_tracked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogDoc {
    pub categories: Vec<Category>,
}

#[derive(Clone, Debug)]
pub struct Catalog(Arc<CatalogDoc>);

impl Catalog {
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self(Arc::new(
            serde_json::from_str(BUILTIN_CATALOG).context("the catalog is not valid")?,
        )))
    }

    pub fn doc(&self) -> &CatalogDoc {
        &self.0
    }

    pub fn get(&self, code: &str) -> Option<&Category> {
        self.0.categories.iter().find(|c| c.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tongzhou_has_its_twenty_two_units() {
        let orgs = Orgs::load().unwrap();
        let d = orgs.district("tongzhou").unwrap();
        assert_eq!(d.name, "通州区");
        assert_eq!(d.streets.len(), 22);
        assert_eq!(
            orgs.street("tongzhou", "jiukeshu").unwrap().name,
            "九棵树街道"
        );
        assert_eq!(orgs.district_of("yujiawu").unwrap().code, "tongzhou");
        assert!(orgs.street("tongzhou", "nowhere").is_none());
    }
}
