//! Cron schedules: when a cron trigger fires, in its IANA time zone (croner; DST handled the
//! way operators expect: a fixed-time job in a skipped hour fires right after the gap, and one
//! in a repeated hour fires once; interval jobs keep their real-time rhythm), and which missed
//! ticks to fire after downtime (the misfire policy).

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// What to do with ticks missed while no server ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Misfire {
    /// Fire none of them; continue with the next future tick.
    #[default]
    Skip,
    /// Fire once (for the latest missed tick).
    RunOnce,
    /// Fire each missed tick, oldest first, at most `limit` of them (the latest ones).
    CatchUp {
        /// Most ticks fired for one outage.
        limit: u32,
    },
}

/// How late a tick may be and still count as on time (not a misfire).
pub const ON_TIME_SECS: i64 = 60;

impl Schedule {
    /// Parses an expression (5 fields, or 6 with seconds; `@daily` and friends; croner's
    /// extensions such as `L`, `#` and `W`) in a time zone, between optional start and end.
    pub fn parse(
        expression: &str,
        timezone: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Schedule, String> {
        let cron = Cron::from_str(expression.trim())
            .map_err(|e| format!("cron expression `{expression}` is invalid: {e}"))?;
        let tz = Tz::from_str(timezone.trim()).map_err(|_| {
            format!(
                "time zone `{timezone}` is not an IANA zone name (like Europe/Amsterdam or UTC)"
            )
        })?;
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err("the schedule ends before it starts".into());
            }
        }
        Ok(Schedule {
            cron,
            tz,
            start,
            end,
        })
    }

    /// The first firing strictly after `t`, if the schedule has one.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = match self.start {
            Some(s) if s > t => s - chrono::Duration::seconds(1),
            _ => t,
        };
        // When `from` is in a repeated (fall-back) hour, croner yields the hour's second
        // occurrence only while iterating through its first: start two hours earlier then.
        let local = from.with_timezone(&self.tz);
        let ambiguous = matches!(
            self.tz.from_local_datetime(&local.naive_local()),
            chrono::LocalResult::Ambiguous(..)
        );
        let start = if ambiguous {
            from - chrono::Duration::hours(2)
        } else {
            from
        };
        let next = self
            .cron
            .iter_after(start.with_timezone(&self.tz))
            .map(|d| d.with_timezone(&Utc))
            .take(100_000)
            .find(|d| *d > from)?;
        match self.end {
            Some(e) if next > e => None,
            _ => Some(next),
        }
    }

    /// The next `n` firings after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// A human description, e.g. "At 02:30 AM, every day".
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// Given the tick that was planned next (`planned`) and `now`, the ticks to fire now under
    /// `misfire`, and the next tick to plan. Ticks at most [`ON_TIME_SECS`] late are on time
    /// and always fire.
    pub fn due(
        &self,
        planned: DateTime<Utc>,
        now: DateTime<Utc>,
        misfire: Misfire,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut missed = Vec::new();
        let mut t = Some(planned);
        // Bounded: a long outage of a per-second schedule must not loop for ever.
        while let Some(tick) = t {
            if tick > now || missed.len() >= 100_000 {
                break;
            }
            missed.push(tick);
            t = self.next_after(tick);
        }
        let next = match t {
            Some(tick) if tick > now => Some(tick),
            Some(_) => self.next_after(now),
            None => None,
        };
        let on_time = |tick: &DateTime<Utc>| (now - *tick).num_seconds() <= ON_TIME_SECS;
        let (late, timely): (Vec<_>, Vec<_>) = missed.into_iter().partition(|t| !on_time(t));
        let mut fire = match misfire {
            Misfire::Skip => Vec::new(),
            Misfire::RunOnce => late.last().copied().into_iter().collect(),
            Misfire::CatchUp { limit } => {
                let skip = late.len().saturating_sub(limit as usize);
                late[skip..].to_vec()
            }
        };
        if misfire == Misfire::RunOnce && !timely.is_empty() {
            // The on-time tick stands in for the late ones.
            fire.clear();
        }
        fire.extend(timely);
        (fire, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn amsterdam_spring_forward_and_fall_back() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
        let s = Schedule::parse("30 2 * * *", "Europe/Amsterdam", None, None).expect("parse");
        let got = s.upcoming(utc(2026, 3, 27, 12, 0), 4);
        assert_eq!(
            got,
            vec![
                utc(2026, 3, 28, 1, 30), // 02:30 CET
                utc(2026, 3, 29, 1, 0),  // the gap: fires right after it, 03:00 CEST
                utc(2026, 3, 30, 0, 30), // 02:30 CEST
                utc(2026, 3, 31, 0, 30),
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, fires once.
        let got = s.upcoming(utc(2026, 10, 24, 12, 0), 3);
        assert_eq!(
            got,
            vec![
                utc(2026, 10, 25, 0, 30),
                utc(2026, 10, 26, 1, 30),
                utc(2026, 10, 27, 1, 30)
            ]
        );
    }

    #[test]
    fn new_york_dst_for_fixed_and_interval_jobs() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let daily = Schedule::parse("30 2 * * *", "America/New_York", None, None).expect("parse");
        assert_eq!(
            daily.upcoming(utc(2026, 3, 7, 12, 0), 2),
            vec![utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
        );
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice, fires once.
        let early = Schedule::parse("30 1 * * *", "America/New_York", None, None).expect("parse");
        assert_eq!(
            early.upcoming(utc(2026, 10, 31, 12, 0), 2),
            vec![utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
        );
        // An hourly job keeps firing every real hour through the repeated hour.
        let hourly = Schedule::parse("0 * * * *", "America/New_York", None, None).expect("parse");
        let got = hourly.upcoming(utc(2026, 11, 1, 3, 30), 4);
        assert_eq!(
            got,
            vec![
                utc(2026, 11, 1, 4, 0),
                utc(2026, 11, 1, 5, 0),
                utc(2026, 11, 1, 6, 0),
                utc(2026, 11, 1, 7, 0)
            ]
        );
    }

    #[test]
    fn start_end_and_errors() {
        let s = Schedule::parse(
            "0 9 * * MON-FRI",
            "UTC",
            Some(utc(2026, 6, 1, 0, 0)),
            Some(utc(2026, 6, 3, 23, 0)),
        )
        .expect("parse");
        assert_eq!(
            s.upcoming(utc(2026, 1, 1, 0, 0), 10),
            vec![
                utc(2026, 6, 1, 9, 0),
                utc(2026, 6, 2, 9, 0),
                utc(2026, 6, 3, 9, 0)
            ]
        );
        assert!(Schedule::parse("61 * * * *", "UTC", None, None)
            .expect_err("bad minute")
            .contains("invalid"));
        assert!(Schedule::parse("* * * * *", "Mars/Olympus", None, None)
            .expect_err("zone")
            .contains("IANA"));
        assert!(Schedule::parse(
            "* * * * *",
            "UTC",
            Some(utc(2026, 2, 1, 0, 0)),
            Some(utc(2026, 1, 1, 0, 0))
        )
        .is_err());
        assert!(!s.describe().is_empty());
    }

    #[test]
    fn misfire_policies() {
        let hourly = Schedule::parse("0 * * * *", "UTC", None, None).expect("parse");
        let planned = utc(2026, 5, 1, 1, 0);
        let now = utc(2026, 5, 1, 5, 30); // ticks at 1, 2, 3, 4, 5 were missed
        let next = Some(utc(2026, 5, 1, 6, 0));
        assert_eq!(hourly.due(planned, now, Misfire::Skip), (vec![], next));
        assert_eq!(
            hourly.due(planned, now, Misfire::RunOnce),
            (vec![utc(2026, 5, 1, 5, 0)], next)
        );
        assert_eq!(
            hourly.due(planned, now, Misfire::CatchUp { limit: 3 }),
            (
                vec![
                    utc(2026, 5, 1, 3, 0),
                    utc(2026, 5, 1, 4, 0),
                    utc(2026, 5, 1, 5, 0)
                ],
                next
            )
        );
        // On time: fires whatever the policy.
        let (fire, next2) = hourly.due(
            utc(2026, 5, 1, 6, 0),
            utc(2026, 5, 1, 6, 0) + chrono::Duration::seconds(5),
            Misfire::Skip,
        );
        assert_eq!(fire, vec![utc(2026, 5, 1, 6, 0)]);
        assert_eq!(next2, Some(utc(2026, 5, 1, 7, 0)));
        // Not yet due: nothing.
        assert_eq!(
            hourly.due(utc(2026, 5, 1, 7, 0), utc(2026, 5, 1, 6, 30), Misfire::Skip),
            (vec![], Some(utc(2026, 5, 1, 7, 0)))
        );
    }
}
