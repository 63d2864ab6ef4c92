//! Triggers: what starts runs without a person asking: webhooks (management API, ingress,
//! signature verification, replay protection, deduplication), schedules and polling
//! (docs/design/0003-triggers.md).

pub mod cron;
pub mod declared;
pub mod polling;
pub mod ratelimit;
pub mod schedule;
pub mod signature;
pub mod webhook;
