//! Orcheo core: the workflow document, its validation, expressions and the durable graph
//! engine. It knows nothing of HTTP or SQL; storage and nodes plug in through traits.

pub mod document;
pub mod duration;
pub mod expr;
pub mod jq;
pub mod ordered_map;
