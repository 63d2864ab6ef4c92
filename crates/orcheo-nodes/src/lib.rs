//! The built-in node catalog. Each node declares a typed config (serde + JSON Schema), its
//! output, a category, a description and examples; [`catalog`] registers them all.

mod code_js;
pub mod code_python;
mod core_nodes;
mod crypto;
mod data;
mod data_text;
mod datetime;
pub mod docs;
mod files;
mod flow;
mod http;
pub mod net;

use orcheo_core::node::Catalog;
use std::sync::Arc;

pub use code_js::*;
pub use code_python::CodePython;
pub use core_nodes::*;
pub use crypto::*;
pub use data::*;
pub use data_text::*;
pub use datetime::*;
pub use files::*;
pub use flow::*;
pub use http::*;

/// Every built-in node type.
pub fn catalog() -> Catalog {
    let mut c = Catalog::new();
    c.register(SetVariables)
        .register(IfElse)
        .register(Switch)
        .register(Merge)
        .register(Transform)
        .register(TemplateText)
        .register(DataTransform)
        .register(Text)
        .register(Json)
        .register(Csv)
        .register(DateTimeNode)
        .register(Crypto)
        .register(Debug)
        .register(Delay)
        .register(Fail)
        .register(Stop)
        .register(NoOp)
        .register(HumanApproval)
        .register(SubWorkflow)
        .register(WriteFile)
        .register(CodeJs)
        .register(CodePython)
        .register(HttpRequest::from_env());
    c
}

/// The built-in catalog, shared.
pub fn shared_catalog() -> Arc<Catalog> {
    Arc::new(catalog())
}
