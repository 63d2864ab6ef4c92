//! Durations as people write them in documents: `"250ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2d"`,
//! or a plain number of milliseconds. The original spelling is kept so documents round-trip.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A duration parsed from a document, remembering how it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duration {
    millis: u64,
    text: Option<String>,
}

impl Duration {
    /// A duration of `millis` milliseconds, written as a number.
    pub fn from_millis(millis: u64) -> Self {
        Self { millis, text: None }
    }
    /// The length in milliseconds.
    pub fn as_millis(&self) -> u64 {
        self.millis
    }
    /// The length as a std duration.
    pub fn to_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
    /// Parses `"1h30m"`, `"250ms"`, `"10s"`, `"2d"`, `"1.5s"` or `"1500"` (milliseconds).
    pub fn parse(text: &str) -> Result<Self, String> {
        let millis = parse_millis(text)?;
        Ok(Self {
            millis,
            text: Some(text.to_string()),
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => f.write_str(t),
            None => write!(f, "{}ms", self.millis),
        }
    }
}

/// Parses a human duration into milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration: write e.g. \"30s\", \"5m\" or \"250ms\"".into());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration {text:?}: expected a number before the unit; write e.g. \"30s\", \"5m\", \"1h30m\" or \"250ms\""));
        }
        let num: f64 = rest[..num_end].parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: {:?} is not a number",
                &rest[..num_end]
            )
        })?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = rest[unit_end..].trim_start();
        let factor = match unit {
            "ms" => 1.0,
            "s" | "sec" | "secs" => 1_000.0,
            "m" | "min" | "mins" => 60_000.0,
            "h" | "hr" | "hrs" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit after {num}; use ms, s, m, h or d"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?}; use ms, s, m, h or d"
                ))
            }
        };
        total += num * factor;
    }
    if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 {
        return Err(format!("invalid duration {text:?}: out of range"));
    }
    Ok(total.round() as u64)
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_u64(self.millis),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::N(n)) => Ok(Duration::from_millis(n)),
            Ok(Raw::S(s)) => Duration::parse(&s).map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected a duration: a string such as \"30s\", \"5m\", \"250ms\" or a whole number of milliseconds",
            )),
        }
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: milliseconds as a whole number, or text such as \"250ms\", \"30s\", \"5m\", \"1h30m\", \"2d\".",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)\\s*)+$|^[0-9]+$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_millis("250ms").unwrap(), 250);
        assert_eq!(parse_millis("30s").unwrap(), 30_000);
        assert_eq!(parse_millis("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_millis("1.5s").unwrap(), 1_500);
        assert_eq!(parse_millis("2d").unwrap(), 172_800_000);
        assert_eq!(parse_millis("1500").unwrap(), 1_500);
        assert!(parse_millis("5 weeks")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_millis("s").unwrap_err().contains("expected a number"));
        assert!(parse_millis("10").is_ok());
        assert!(parse_millis("").is_err());
    }

    #[test]
    fn round_trips_spelling() {
        let d: Duration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        let d: Duration = serde_json::from_str("1500").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "1500");
    }
}
