//! Triggers: what starts runs without a person asking (webhooks, schedules, polling). This
//! release has the signature verification of webhook requests; the ingress route, schedules and
//! polling follow (docs/design/0003-triggers.md).

pub mod signature;
