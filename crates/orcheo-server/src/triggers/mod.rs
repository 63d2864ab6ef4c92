//! Triggers: what starts runs without a person asking. This release has webhooks (management
//! API, ingress, signature verification, replay protection, deduplication); schedules and
//! polling follow (docs/design/0003-triggers.md).

pub mod cron;
pub mod ratelimit;
pub mod schedule;
pub mod signature;
pub mod webhook;
