//! The `filter` of search requests as clients write it, its OpenAPI schema, and its validation
//! into the service's [`Filter`]. Every key is optional and every given key must hold; `and`,
//! `or` and `not` nest. Unknown keys, wrong types, inverted ranges and unknown field names are
//! refused (422) with the reason.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::data::{
    filter::{Area, Bound, FieldMatch, Filter, Range},
    metadata::{parse_time_bound, FieldValue, GeoPoint, TimeBound},
};

/// Nesting deeper than this is refused (a filter is a few conditions, not a program).
const MAX_DEPTH: usize = 8;
/// Conditions in one filter, lists included.
const MAX_CONDITIONS: usize = 128;
const MAX_KM: f64 = 20_100.0;

/// Which images a search may return, by what is known about them. Photos lacking a field do not
/// match a condition on it (and do match its `not`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// When the photo was taken (EXIF). Dates without an offset (`2024-06-01`,
    /// `2024-06-01T18:00`) compare with the camera's wall clock; with `Z` or `+02:00` they are
    /// instants.
    pub taken_at: Option<TimeRange>,
    /// Only photos with (true) or without (false) a taken-at time.
    pub has_taken_at: Option<bool>,
    /// In this folder or below it (`2024/summer`), relative to the library's root.
    pub folder: Option<String>,
    /// EXIF camera make, any of these (case-insensitive).
    pub camera_make: Option<OneOrMany>,
    /// EXIF camera model, any of these (case-insensitive).
    pub camera_model: Option<OneOrMany>,
    /// Pixels, as displayed.
    pub width: Option<NumberRange>,
    pub height: Option<NumberRange>,
    /// Bytes of the original file.
    pub file_size: Option<NumberRange>,
    /// Within `km` of a point.
    pub near: Option<Near>,
    /// Inside a latitude/longitude box (west > east crosses the antimeridian).
    pub within: Option<GeoBox>,
    /// Only photos with (true) or without (false) a GPS position.
    pub has_location: Option<bool>,
    /// Your own fields (an upload's `metadata`): `{"album": "Trip"}` (equal; a list field
    /// matches when one of its values does), `{"rating": {"gte": 4}}` (number or date range),
    /// `{"people": {"any": ["Ann", "Bo"]}}` (any of).
    #[schema(value_type = Object)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// All of these hold.
    #[schema(no_recursion)]
    pub and: Option<Vec<SearchFilter>>,
    /// At least one of these holds.
    #[schema(no_recursion)]
    pub or: Option<Vec<SearchFilter>>,
    /// This does not hold.
    #[schema(no_recursion)]
    pub not: Option<Box<SearchFilter>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub gt: Option<String>,
    pub gte: Option<String>,
    pub lt: Option<String>,
    pub lte: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberRange {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    /// Radius in kilometres, > 0.
    pub km: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoBox {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl SearchFilter {
    /// The service's filter, or why this one is refused.
    pub fn validate(&self) -> Result<Filter, String> {
        let mut budget = MAX_CONDITIONS;
        self.at_depth(0, &mut budget)
    }

    fn at_depth(&self, depth: usize, budget: &mut usize) -> Result<Filter, String> {
        if depth > MAX_DEPTH {
            return Err(format!("filters nest at most {MAX_DEPTH} deep"));
        }
        let mut all = Vec::new();
        if let Some(r) = &self.taken_at {
            spend(budget, 1)?;
            all.push(Filter::TakenAt(
                time_range(r).map_err(|e| format!("taken_at: {e}"))?,
            ));
        }
        if let Some(has) = self.has_taken_at {
            all.push(Filter::HasTakenAt(has));
        }
        if let Some(folder) = &self.folder {
            spend(budget, 1)?;
            let folder = folder.trim().trim_matches('/').to_string();
            all.push(Filter::Folder(folder));
        }
        for (name, value, make) in [
            ("camera_make", &self.camera_make, true),
            ("camera_model", &self.camera_model, false),
        ] {
            let Some(value) = value else { continue };
            let names = match value {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            if names.is_empty() {
                return Err(format!("{name}: give at least one name"));
            }
            spend(budget, names.len())?;
            all.push(if make {
                Filter::CameraMake(names)
            } else {
                Filter::CameraModel(names)
            });
        }
        for (name, range, build) in [
            (
                "width",
                &self.width,
                Filter::Width as fn(Range<f64>) -> Filter,
            ),
            ("height", &self.height, Filter::Height),
            ("file_size", &self.file_size, Filter::FileSize),
        ] {
            if let Some(r) = range {
                spend(budget, 1)?;
                all.push(build(number_range(r).map_err(|e| format!("{name}: {e}"))?));
            }
        }
        if let Some(n) = &self.near {
            spend(budget, 1)?;
            let centre = GeoPoint::new(n.lat, n.lon)
                .ok_or("near: lat must be within -90..90 and lon within -180..180")?;
            if !(n.km > 0.0 && n.km <= MAX_KM) {
                return Err(format!("near: km must be above 0 and at most {MAX_KM}"));
            }
            all.push(Filter::Location(Area::Near { centre, km: n.km }));
        }
        if let Some(b) = &self.within {
            spend(budget, 1)?;
            let (Some(sw), Some(ne)) = (
                GeoPoint::new(b.south, b.west),
                GeoPoint::new(b.north, b.east),
            ) else {
                return Err(
                    "within: latitudes must be within -90..90 and longitudes within -180..180"
                        .into(),
                );
            };
            if sw.lat > ne.lat {
                return Err(format!(
                    "within: south ({}) is north of north ({})",
                    sw.lat, ne.lat
                ));
            }
            all.push(Filter::Location(Area::Box {
                south: sw.lat,
                west: sw.lon,
                north: ne.lat,
                east: ne.lon,
            }));
        }
        if let Some(has) = self.has_location {
            all.push(Filter::HasLocation(has));
        }
        if let Some(fields) = &self.fields {
            for (name, value) in fields {
                spend(budget, 1)?;
                crate::data::metadata::check_field_name(name)
                    .map_err(|e| format!("fields.{name}: {e}"))?;
                let matches =
                    field_match(value, budget).map_err(|e| format!("fields.{name}: {e}"))?;
                all.push(Filter::Field {
                    name: name.clone(),
                    matches,
                });
            }
        }
        for (name, list, any) in [("and", &self.and, false), ("or", &self.or, true)] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                return Err(format!("{name}: give at least one filter"));
            }
            let parts = list
                .iter()
                .map(|f| f.at_depth(depth + 1, budget))
                .collect::<Result<Vec<_>, _>>()?;
            all.push(if any {
                Filter::Any(parts)
            } else {
                Filter::All(parts)
            });
        }
        if let Some(not) = &self.not {
            all.push(Filter::Not(Box::new(not.at_depth(depth + 1, budget)?)));
        }
        Ok(match all.len() {
            1 => all.pop().expect("one"),
            _ => Filter::All(all),
        })
    }
}

fn range<T: Copy + PartialOrd + std::fmt::Debug, S: Copy>(
    gt: Option<S>,
    gte: Option<S>,
    lt: Option<S>,
    lte: Option<S>,
    value: impl Fn(S) -> Result<T, String>,
    show: impl Fn(S) -> String,
) -> Result<Range<T>, String> {
    let bound = |strict: Option<S>, loose: Option<S>, names: (&str, &str)| match (strict, loose) {
        (Some(_), Some(_)) => Err(format!("give {} or {}, not both", names.0, names.1)),
        (Some(s), None) => Ok(Some((
            Bound {
                value: value(s)?,
                inclusive: false,
            },
            show(s),
        ))),
        (None, Some(s)) => Ok(Some((
            Bound {
                value: value(s)?,
                inclusive: true,
            },
            show(s),
        ))),
        (None, None) => Ok(None),
    };
    let lower = bound(gt, gte, ("gt", "gte"))?;
    let upper = bound(lt, lte, ("lt", "lte"))?;
    if lower.is_none() && upper.is_none() {
        return Err("give at least one of gt, gte, lt, lte".into());
    }
    if let (Some((lo, los)), Some((hi, his))) = (&lower, &upper) {
        let empty =
            lo.value > hi.value || (lo.value >= hi.value && !(lo.inclusive && hi.inclusive));
        if empty {
            return Err(format!(
                "the range is empty: the lower bound {los} is not below the upper bound {his}"
            ));
        }
    }
    Ok(Range {
        lower: lower.map(|b| b.0),
        upper: upper.map(|b| b.0),
    })
}

fn finite(v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err("bounds must be finite numbers".into())
    }
}

fn number_range(r: &NumberRange) -> Result<Range<f64>, String> {
    range(r.gt, r.gte, r.lt, r.lte, finite, |v| v.to_string())
}

fn time_range(r: &TimeRange) -> Result<Range<TimeBound>, String> {
    let bounds = [&r.gt, &r.gte, &r.lt, &r.lte].map(|b| b.as_deref());
    let parsed = range(
        bounds[0],
        bounds[1],
        bounds[2],
        bounds[3],
        parse_time_bound,
        |s| s.to_string(),
    )?;
    // a wall-clock bound and an instant bound are on different scales: compare only like ones
    if let (Some(lo), Some(hi)) = (parsed.lower, parsed.upper) {
        if lo.value.is_instant() != hi.value.is_instant() {
            return Err("give both bounds with an offset, or neither".into());
        }
        if lo.value.seconds() > hi.value.seconds() {
            return Err("the range is empty".into());
        }
    }
    Ok(parsed)
}

fn field_match(v: &serde_json::Value, budget: &mut usize) -> Result<FieldMatch, String> {
    let serde_json::Value::Object(map) = v else {
        if v.is_array() {
            return Err(r#"for any of several values write {"any": [...]}"#.into());
        }
        return FieldValue::from_json(v).map(FieldMatch::Equals);
    };
    if let Some(any) = map.get("any") {
        if map.len() > 1 {
            return Err("`any` stands alone".into());
        }
        let serde_json::Value::Array(items) = any else {
            return Err("`any` takes a list".into());
        };
        if items.is_empty() {
            return Err("`any` needs at least one value".into());
        }
        spend(budget, items.len())?;
        return Ok(FieldMatch::AnyOf(
            items
                .iter()
                .map(FieldValue::from_json)
                .collect::<Result<_, _>>()?,
        ));
    }
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "gt" | "gte" | "lt" | "lte"))
    {
        return Err(format!(
            "unknown key `{unknown}` (expected any, gt, gte, lt, lte)"
        ));
    }
    let get = |k: &str| map.get(k);
    let all_numbers = map.values().all(|v| v.is_number());
    if all_numbers {
        let n = |k: &str| get(k).and_then(|v| v.as_f64());
        return range(n("gt"), n("gte"), n("lt"), n("lte"), finite, |v| {
            v.to_string()
        })
        .map(FieldMatch::Numbers);
    }
    let s = |k: &str| get(k).and_then(|v| v.as_str());
    if map.values().all(|v| v.is_string()) {
        let date = |text: &str| match parse_time_bound(text)? {
            TimeBound::Local(_) => Ok(parse_time_bound(text)?.seconds()),
            TimeBound::Instant { .. } => Err("field dates compare without an offset".to_string()),
        };
        return range(s("gt"), s("gte"), s("lt"), s("lte"), date, |v| {
            v.to_string()
        })
        .map(FieldMatch::Dates);
    }
    Err("range bounds are all numbers or all dates".into())
}

fn spend(budget: &mut usize, n: usize) -> Result<(), String> {
    *budget = budget.checked_sub(n).ok_or(format!(
        "a filter holds at most {MAX_CONDITIONS} conditions"
    ))?;
    Ok(())
}
