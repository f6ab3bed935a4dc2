//! The user's own fields on a photo: an upload's or a JSONL line's `metadata` object of strings,
//! numbers, booleans and dates (or lists of them: `"people": ["Ann", "Bo"]`). Bounded in count
//! and size so a request cannot store unbounded rows.

use std::collections::BTreeMap;

use super::time::{parse_time_bound, TimeBound};

pub const MAX_FIELDS: usize = 64;
const MAX_NAME_CHARS: usize = 64;
const MAX_TEXT_CHARS: usize = 1024;
const MAX_VALUES_PER_FIELD: usize = 64;

/// One value of a user field. A string that reads as a date (`2024-06-01`, `2024-06-01T10:00`) is
/// a date, so date ranges work on it; it keeps its text.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Number(f64),
    Bool(bool),
    Date { text: String, seconds: i64 },
}

impl FieldValue {
    /// Parse a JSON scalar; `Err` names what is wrong (null, an object, a nested list, too long).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::String(s) => {
                if s.chars().count() > MAX_TEXT_CHARS {
                    return Err(format!("strings are at most {MAX_TEXT_CHARS} characters"));
                }
                Ok(match parse_time_bound(s) {
                    Ok(TimeBound::Local(_)) if s.len() >= 10 => Self::Date {
                        seconds: parse_time_bound(s).map(|b| b.seconds()).unwrap_or(0),
                        text: s.clone(),
                    },
                    _ => Self::Text(s.clone()),
                })
            }
            serde_json::Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Self::Number)
                .ok_or_else(|| "numbers must be finite".to_string()),
            serde_json::Value::Bool(b) => Ok(Self::Bool(*b)),
            serde_json::Value::Null => Err("null is not a value (leave the field out)".into()),
            _ => Err("values are strings, numbers, booleans or dates (or a list of them)".into()),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Text(s) | Self::Date { text: s, .. } => serde_json::Value::String(s.clone()),
            // integers stay integers (a rating of 5 comes back as 5, not 5.0)
            Self::Number(n) if n.fract() == 0.0 && n.abs() < 9e15 => serde_json::json!(*n as i64),
            Self::Number(n) => serde_json::json!(n),
            Self::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("metadata field {field:?}: {reason}")]
pub struct InvalidFields {
    pub field: String,
    pub reason: String,
}

/// A photo's user fields by name, each with one or more values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFields(BTreeMap<String, Vec<FieldValue>>);

impl UserFields {
    /// Parse a JSON object (`{"album": "Trip", "rating": 4, "people": ["Ann"]}`).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, InvalidFields> {
        let invalid = |field: &str, reason: String| InvalidFields {
            field: field.to_string(),
            reason,
        };
        let serde_json::Value::Object(map) = v else {
            return Err(invalid("", "metadata must be a JSON object".into()));
        };
        if map.len() > MAX_FIELDS {
            return Err(invalid("", format!("at most {MAX_FIELDS} fields")));
        }
        let mut out = BTreeMap::new();
        for (name, value) in map {
            check_name(name).map_err(|r| invalid(name, r))?;
            let values = match value {
                serde_json::Value::Array(items) => {
                    if items.len() > MAX_VALUES_PER_FIELD {
                        return Err(invalid(
                            name,
                            format!("at most {MAX_VALUES_PER_FIELD} values"),
                        ));
                    }
                    items
                        .iter()
                        .map(FieldValue::from_json)
                        .collect::<Result<Vec<_>, _>>()
                }
                one => FieldValue::from_json(one).map(|v| vec![v]),
            }
            .map_err(|r| invalid(name, r))?;
            out.insert(name.clone(), values);
        }
        Ok(Self(out))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(name, values)| {
                    let value = match values.as_slice() {
                        [one] => one.to_json(),
                        many => {
                            serde_json::Value::Array(many.iter().map(FieldValue::to_json).collect())
                        }
                    };
                    (name.clone(), value)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (name, value) pairs, a list field giving one pair per value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v)))
    }

    /// Add a value read back from storage.
    pub fn push(&mut self, name: String, value: FieldValue) {
        self.0.entry(name).or_default().push(value);
    }
}

/// 1..=64 characters of `[A-Za-z0-9_.-]`, as filters name them.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "field names are 1 to {MAX_NAME_CHARS} characters of A-Z a-z 0-9 _ . -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_round_trip_and_dates_are_recognised() {
        let v = json!({"album": "Trip", "rating": 4.5, "stars": 4, "favourite": true,
                       "people": ["Ann", "Bo"], "event": "2024-06-01"});
        let f = UserFields::from_json(&v).unwrap();
        assert_eq!(f.to_json(), v);
        let event = f.iter().find(|(n, _)| *n == "event").unwrap().1;
        assert!(matches!(
            event,
            FieldValue::Date {
                seconds: 1_717_200_000,
                ..
            }
        ));
        assert_eq!(f.iter().filter(|(n, _)| *n == "people").count(), 2);
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        for (v, field) in [
            (json!({"a b": 1}), "a b"),
            (json!({"x": null}), "x"),
            (json!({"x": {"nested": 1}}), "x"),
            (json!({"x": [[1]]}), "x"),
            (json!({"x": "y".repeat(2000)}), "x"),
        ] {
            let e = UserFields::from_json(&v).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
        }
        assert!(UserFields::from_json(&json!([1])).is_err());
        let many: serde_json::Map<_, _> = (0..65).map(|i| (format!("f{i}"), json!(i))).collect();
        assert!(UserFields::from_json(&serde_json::Value::Object(many)).is_err());
    }
}
