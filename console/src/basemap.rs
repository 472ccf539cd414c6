//! The map's outlines: the shipped indicative province outlines (Natural Earth, public domain;
//! built by `scripts/basemap/build_china_provinces.py`), or a deployer's own GeoJSON
//! (`--basemap`, e.g. an approved standard map). Served as is on `/basemap.geojson`; the page
//! draws every Polygon and MultiPolygon in it.

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use std::path::Path;

/// The shipped outlines: provincial-level divisions of China, simplified (~100 KB).
const SHIPPED: &str = include_str!("assets/china-provinces.geojson");

/// GeoJSON outlines, checked once at start.
#[derive(Clone)]
pub struct Basemap {
    geojson: Bytes,
}

impl Basemap {
    /// The file at `path`, or the shipped outlines. A file that is not a GeoJSON
    /// FeatureCollection with at least one polygon is an error naming `--basemap` and the file.
    pub fn load(path: Option<&Path>) -> Result<Basemap> {
        let Some(path) = path else {
            return Ok(Basemap { geojson: Bytes::from_static(SHIPPED.as_bytes()) });
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--basemap {}: cannot read", path.display()))?;
        check(&text).with_context(|| format!("--basemap {}", path.display()))?;
        Ok(Basemap { geojson: Bytes::from(text) })
    }

    /// The GeoJSON text.
    pub fn geojson(&self) -> Bytes {
        self.geojson.clone()
    }
}

/// Whether `text` is a FeatureCollection with at least one Polygon or MultiPolygon.
fn check(text: &str) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    if doc.get("type").and_then(|t| t.as_str()) != Some("FeatureCollection") {
        bail!("not a GeoJSON FeatureCollection (\"type\" must be \"FeatureCollection\")");
    }
    let Some(features) = doc.get("features").and_then(|f| f.as_array()) else {
        bail!("\"features\" must be an array");
    };
    let polygons = features
        .iter()
        .filter(|f| matches!(f.pointer("/geometry/type").and_then(|t| t.as_str()), Some("Polygon" | "MultiPolygon")))
        .count();
    if polygons == 0 {
        bail!("no Polygon or MultiPolygon features to draw ({} features)", features.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_outlines_are_small_and_name_every_provincial_division() {
        assert!(SHIPPED.len() < 300_000, "{} bytes", SHIPPED.len());
        check(SHIPPED).unwrap();
        let doc: serde_json::Value = serde_json::from_str(SHIPPED).unwrap();
        let codes: Vec<&str> =
            doc["features"].as_array().unwrap().iter().map(|f| f["properties"]["code"].as_str().unwrap()).collect();
        assert_eq!(codes.len(), 34, "31 provinces, Taiwan, Hong Kong, Macao: {codes:?}");
        for code in ["11", "42", "46", "65", "71", "81", "82"] {
            assert!(codes.contains(&code), "{code} missing: {codes:?}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_feature_collection_is_refused_naming_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("map.geojson");
        for (text, says) in [
            ("{", "not JSON"),
            (r#"{"type":"Feature"}"#, "FeatureCollection"),
            (
                r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]}}]}"#,
                "no Polygon",
            ),
        ] {
            std::fs::write(&bad, text).unwrap();
            let err = format!("{:#}", Basemap::load(Some(&bad)).err().unwrap());
            assert!(err.contains("--basemap") && err.contains("map.geojson") && err.contains(says), "{err}");
        }
        let err = format!("{:#}", Basemap::load(Some(&dir.path().join("missing.geojson"))).err().unwrap());
        assert!(err.contains("--basemap") && err.contains("cannot read"), "{err}");
        let good = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#;
        std::fs::write(&bad, good).unwrap();
        assert_eq!(&Basemap::load(Some(&bad)).unwrap().geojson()[..], good.as_bytes());
    }
}
