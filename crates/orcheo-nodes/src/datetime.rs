//! `datetime`: parse, format, add to, convert and compare points in time.

use async_trait::async_trait;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use orcheo_core::node::{Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Date and time operations.
pub struct DateTimeNode;

/// What `datetime` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum DateTimeOperation {
    /// Read `value` (optionally with `format`; naive times are in `timezone`).
    Parse,
    /// Write `value` with `format` in `timezone`.
    Format,
    /// Add `duration` to `value` (a leading `-` subtracts).
    Add,
    /// Express `value` in `timezone`.
    Convert,
    /// `end` minus `value`, in `unit`.
    Diff,
    /// The current time (in `timezone`).
    Now,
}

/// A unit for `diff`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiffUnit {
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    #[default]
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
    /// Days (of 24 hours).
    Days,
}

/// Config of `datetime`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateTimeConfig {
    /// The operation.
    pub operation: DateTimeOperation,
    /// The time: RFC 3339 text, `YYYY-MM-DD[ HH:MM[:SS]]`, text matching `format`, or epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// strftime pattern: how `parse` reads `value`, how `format` writes it (e.g. `%d.%m.%Y %H:%M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// IANA zone (e.g. `Europe/Berlin`): of naive input, and of the result (default: the input's offset, else UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// For `add`: `"1h30m"`, `"-2d"`, or `{"days": 1, "hours": 2, "minutes": 3, "seconds": 4}` (days are calendar days in the zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Value>,
    /// For `diff`: the later time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Value>,
    /// For `diff` (default seconds).
    #[serde(default)]
    pub unit: DiffUnit,
}

/// Output of `datetime`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DateTimeOutput {
    /// ISO 8601 / RFC 3339 time (not for `diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iso: Option<String>,
    /// Milliseconds since 1970-01-01 UTC (not for `diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch_ms: Option<i64>,
    /// For `format`: the formatted text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For `diff`: the difference in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<f64>,
}

/// The zone a time is shown in.
#[derive(Clone, Copy)]
enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

/// A point in time and the zone it is shown in.
#[derive(Clone, Copy)]
struct Moment {
    utc: DateTime<Utc>,
    zone: Zone,
}

impl Moment {
    fn fixed(&self) -> DateTime<FixedOffset> {
        match self.zone {
            Zone::Named(tz) => self.utc.with_timezone(&tz).fixed_offset(),
            Zone::Fixed(off) => self.utc.with_timezone(&off),
        }
    }
    fn iso(&self) -> String {
        self.fixed()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}; use an IANA name such as `Europe/Berlin` or `UTC`")
    })
}

fn items(format: &str) -> Result<Vec<Item<'_>>, String> {
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "invalid format {format:?} (strftime syntax, e.g. `%Y-%m-%d %H:%M`)"
        ));
    }
    Ok(items)
}

/// Resolves a wall-clock time in a zone (the earlier of two on a DST fold).
fn local(naive: NaiveDateTime, zone: Zone) -> Result<Moment, String> {
    let utc = match zone {
        Zone::Named(tz) => tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.to_utc()),
        Zone::Fixed(off) => off
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.to_utc()),
    };
    utc.map(|utc| Moment { utc, zone })
        .ok_or_else(|| format!("{naive} does not exist in the time zone (a daylight-saving gap)"))
}

fn parse_value(v: &Value, format: Option<&str>, tz: Option<Tz>) -> Result<Moment, String> {
    let naive_zone = Zone::Named(tz.unwrap_or(Tz::UTC));
    let text = match v {
        Value::Number(n) => {
            let ms = n
                .as_i64()
                .ok_or_else(|| format!("epoch milliseconds must be a whole number, not {n}"))?;
            let utc = DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| format!("{ms} ms is out of range"))?;
            return Ok(Moment {
                utc,
                zone: naive_zone,
            });
        }
        Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "a time must be text or epoch milliseconds, not {}",
                orcheo_core::reducer::kind(other)
            ))
        }
    };
    let with_offset = |d: DateTime<FixedOffset>| Moment {
        utc: d.to_utc(),
        zone: tz.map_or(Zone::Fixed(*d.offset()), Zone::Named),
    };
    if let Some(f) = format {
        items(f)?;
        if let Ok(d) = DateTime::parse_from_str(text, f) {
            return Ok(with_offset(d));
        }
        if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
            return local(n, naive_zone);
        }
        return match NaiveDate::parse_from_str(text, f) {
            Ok(d) => local(d.and_time(chrono::NaiveTime::MIN), naive_zone),
            Err(e) => Err(format!("{text:?} does not match the format {f:?}: {e}")),
        };
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(with_offset(d));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
            return local(n, naive_zone);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(d.and_time(chrono::NaiveTime::MIN), naive_zone);
    }
    Err(format!(
        "cannot read {text:?} as a time; give RFC 3339 (`2024-05-01T09:30:00Z`), `YYYY-MM-DD[ HH:MM[:SS]]`, epoch milliseconds, or a `format`"
    ))
}

/// Adds calendar days (in the moment's zone) and a fixed span.
fn add(m: Moment, days: i64, span: Duration) -> Result<Moment, String> {
    let shifted = if days != 0 {
        let wall = m.fixed().naive_local() + Duration::days(days);
        local(wall, m.zone)?
    } else {
        m
    };
    let utc = shifted
        .utc
        .checked_add_signed(span)
        .ok_or("the result is out of range")?;
    Ok(Moment { utc, ..shifted })
}

/// Reads a duration: text such as `1h30m` (leading `-` subtracts) or `{days, hours, minutes, seconds}`.
fn duration(v: &Value) -> Result<(i64, Duration), String> {
    match v {
        Value::String(s) => {
            let (neg, body) = match s.trim().strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.trim()),
            };
            let d = orcheo_core::duration::Duration::parse(body)
                .map_err(|e| format!("duration {s:?}: {e}"))?;
            let ms =
                i64::try_from(d.as_millis()).map_err(|_| format!("duration {s:?} is too long"))?;
            Ok((0, Duration::milliseconds(if neg { -ms } else { ms })))
        }
        Value::Object(o) => {
            let mut days = 0i64;
            let mut span = Duration::zero();
            for (k, v) in o {
                let n = v
                    .as_i64()
                    .ok_or_else(|| format!("duration field `{k}` must be a whole number"))?;
                match k.as_str() {
                    "weeks" => days += n * 7,
                    "days" => days += n,
                    "hours" => span += Duration::hours(n),
                    "minutes" => span += Duration::minutes(n),
                    "seconds" => span += Duration::seconds(n),
                    "milliseconds" => span += Duration::milliseconds(n),
                    other => return Err(format!("unknown duration field `{other}`; use weeks, days, hours, minutes, seconds or milliseconds")),
                }
            }
            Ok((days, span))
        }
        other => Err(format!(
            "a duration is text like \"1h30m\" or an object like {{\"days\": 1}}, not {}",
            orcheo_core::reducer::kind(other)
        )),
    }
}

fn need<'a>(v: &'a Option<Value>, field: &str, op: &str) -> Result<&'a Value, String> {
    v.as_ref().ok_or_else(|| format!("`{op}` needs `{field}`"))
}

fn datetime_op(c: &DateTimeConfig, now: DateTime<Utc>) -> Result<Value, String> {
    let tz = c.timezone.as_deref().map(zone).transpose()?;
    let op = match c.operation {
        DateTimeOperation::Parse => "parse",
        DateTimeOperation::Format => "format",
        DateTimeOperation::Add => "add",
        DateTimeOperation::Convert => "convert",
        DateTimeOperation::Diff => "diff",
        DateTimeOperation::Now => "now",
    };
    let value = || parse_value(need(&c.value, "value", op)?, None, tz);
    let in_zone = |m: Moment| match tz {
        Some(t) => Moment {
            zone: Zone::Named(t),
            ..m
        },
        None => m,
    };
    let moment = match c.operation {
        DateTimeOperation::Parse => {
            parse_value(need(&c.value, "value", op)?, c.format.as_deref(), tz)?
        }
        DateTimeOperation::Now => in_zone(Moment {
            utc: now,
            zone: Zone::Named(Tz::UTC),
        }),
        DateTimeOperation::Convert => {
            if tz.is_none() {
                return Err("`convert` needs `timezone`".into());
            }
            value()?
        }
        DateTimeOperation::Format => value()?,
        DateTimeOperation::Add => {
            let (days, span) = duration(need(&c.duration, "duration", op)?)?;
            add(value()?, days, span)?
        }
        DateTimeOperation::Diff => {
            let start = value()?;
            let end = parse_value(need(&c.end, "end", op)?, None, tz)?;
            let ms = (end.utc - start.utc).num_milliseconds() as f64;
            let per = match c.unit {
                DiffUnit::Milliseconds => 1.0,
                DiffUnit::Seconds => 1e3,
                DiffUnit::Minutes => 6e4,
                DiffUnit::Hours => 3.6e6,
                DiffUnit::Days => 8.64e7,
            };
            return Ok(json!({ "diff": ms / per }));
        }
    };
    let mut out = json!({ "iso": moment.iso(), "epoch_ms": moment.utc.timestamp_millis() });
    if c.operation == DateTimeOperation::Format {
        let f = c.format.as_deref().unwrap_or("%Y-%m-%dT%H:%M:%S%:z");
        let items = items(f)?;
        let mut text = String::new();
        write!(
            text,
            "{}",
            moment.fixed().format_with_items(items.into_iter())
        )
        .map_err(|_| format!("cannot write the time with format {f:?}"))?;
        out["text"] = json!(text);
    }
    Ok(out)
}

#[async_trait]
impl Node for DateTimeNode {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<DateTimeConfig, DateTimeOutput>(
            "datetime",
            "Date & time",
            "data",
            "Parses times (RFC 3339, dates, epoch ms or a strftime `format`), formats them, adds durations (`1h30m`, `-2d`, `{days: 1}`; days follow the zone's calendar), converts between IANA time zones, takes differences and reads the clock. Outputs `{iso, epoch_ms}` (plus `text` for format) or `{diff}`.",
        )
        .icon("calendar")
        .example("Parse a European date", json!({ "operation": "parse", "value": "{{ input.date }}", "format": "%d.%m.%Y %H:%M", "timezone": "Europe/Berlin" }))
        .example("Human-readable", json!({ "operation": "format", "value": "{{ state.due }}", "format": "%A %-d %B %Y, %H:%M", "timezone": "America/New_York" }))
        .example("Due in three days", json!({ "operation": "add", "value": "{{ input.created_at }}", "duration": { "days": 3 } }))
        .example("Hours open", json!({ "operation": "diff", "value": "{{ input.opened_at }}", "end": "{{ input.closed_at }}", "unit": "hours" }))
        .example("Now in Tokyo", json!({ "operation": "now", "timezone": "Asia/Tokyo" }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: DateTimeConfig = ctx.config_as()?;
        let out = datetime_op(&c, Utc::now())
            .map_err(|m| NodeError::new("datetime", format!("node `{}`: {m}", ctx.node_id)))?;
        Ok(NodeOutput::output(out).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(c: Value) -> Result<Value, String> {
        let now = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        datetime_op(&serde_json::from_value(c).unwrap(), now)
    }

    #[test]
    fn parse_format_convert() {
        assert_eq!(
            op(json!({"operation": "parse", "value": "01.05.2024 09:30", "format": "%d.%m.%Y %H:%M", "timezone": "Europe/Berlin"})).unwrap(),
            json!({"iso": "2024-05-01T09:30:00+02:00", "epoch_ms": 1714548600000i64})
        );
        assert_eq!(
            op(json!({"operation": "parse", "value": "2024-05-01"})).unwrap()["iso"],
            "2024-05-01T00:00:00Z"
        );
        assert_eq!(
            op(json!({"operation": "parse", "value": 1714548600000i64})).unwrap()["iso"],
            "2024-05-01T07:30:00Z"
        );
        assert_eq!(
            op(json!({"operation": "convert", "value": "2024-05-01T07:30:00Z", "timezone": "America/New_York"})).unwrap()["iso"],
            "2024-05-01T03:30:00-04:00"
        );
        assert_eq!(
            op(json!({"operation": "format", "value": "2024-05-01T07:30:00+02:00", "format": "%d %b %Y %H:%M"})).unwrap()["text"],
            "01 May 2024 07:30"
        );
        assert_eq!(
            op(json!({"operation": "now", "timezone": "Asia/Tokyo"})).unwrap(),
            json!({"iso": "2023-11-15T07:13:20+09:00", "epoch_ms": 1_700_000_000_000i64})
        );
    }

    #[test]
    fn add_and_diff() {
        // A calendar day across the DST change keeps the wall-clock time.
        assert_eq!(
            op(json!({"operation": "add", "value": "2024-03-30 12:00", "timezone": "Europe/Berlin", "duration": {"days": 1, "minutes": 15}})).unwrap()["iso"],
            "2024-03-31T12:15:00+02:00"
        );
        assert_eq!(
            op(json!({"operation": "add", "value": "2024-03-30T12:00:00Z", "duration": "-1h30m"}))
                .unwrap()["iso"],
            "2024-03-30T10:30:00Z"
        );
        assert_eq!(
            op(json!({"operation": "diff", "value": "2024-05-01T00:00:00Z", "end": "2024-05-02T06:00:00+00:00", "unit": "hours"})).unwrap(),
            json!({"diff": 30.0})
        );
    }

    #[test]
    fn errors() {
        let e = op(json!({"operation": "parse", "value": "tomorrow"})).unwrap_err();
        assert!(e.contains("cannot read \"tomorrow\""), "{e}");
        let e = op(json!({"operation": "now", "timezone": "Mars/Base"})).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        let e =
            op(json!({"operation": "format", "value": "2024-05-01", "format": "%Q"})).unwrap_err();
        assert!(e.contains("invalid format"), "{e}");
        let e =
            op(json!({"operation": "add", "value": "2024-05-01", "duration": {"fortnights": 1}}))
                .unwrap_err();
        assert!(e.contains("unknown duration field"), "{e}");
        let e = op(json!({"operation": "convert", "value": "2024-05-01"})).unwrap_err();
        assert_eq!(e, "`convert` needs `timezone`");
        let e = op(
            json!({"operation": "parse", "value": "2024-03-31 02:30", "timezone": "Europe/Berlin"}),
        )
        .unwrap_err();
        assert!(e.contains("daylight-saving gap"), "{e}");
    }
}
