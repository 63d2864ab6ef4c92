//! Generates `docs/nodes.md` from the catalog, so the reference can never drift from the code.

use orcheo_core::node::NodeSpec;
use serde_json::Value;

fn type_of(schema: &Value, root: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let target = root.get("$defs").and_then(|d| d.get(name));
        if let Some(t) = target {
            if t.get("enum").is_some() || t.get("oneOf").is_some() {
                return type_of(t, root);
            }
        }
        return name.to_string();
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let parts: Vec<String> = one
            .iter()
            .map(|s| match s.get("const") {
                Some(c) => format!("`{c}`"),
                None => type_of(s, root),
            })
            .collect();
        return parts.join(" \\| ");
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = schema
                .get("items")
                .map(|i| type_of(i, root))
                .unwrap_or_else(|| "any".into());
            format!("list of {item}")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" \\| "),
        _ => "any".into(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One Markdown section for a node type.
pub fn node_section(spec: &NodeSpec) -> String {
    let mut out = format!("## `{}` — {}\n\n", spec.type_id, spec.name);
    out.push_str(&format!("Category: **{}**", spec.category));
    if !spec.branches.is_empty() {
        out.push_str(&format!(
            " · branches: {}",
            spec.branches
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if spec.interrupts {
        out.push_str(" · can pause the run (timeout edges allowed)");
    }
    out.push_str(&format!("\n\n{}\n\n", spec.description));
    let schema = &spec.config_schema;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) if !props.is_empty() => {
            out.push_str("| Config field | Type | Required | Description |\n|---|---|---|---|\n");
            for (name, p) in props {
                let desc = p.get("description").and_then(Value::as_str).unwrap_or("");
                let raw = if spec.raw_fields.iter().any(|r| r == name) {
                    " (not a template)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "| `{name}` | {} | {} | {}{raw} |\n",
                    cell(&type_of(p, schema)),
                    if required.contains(&name.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    cell(desc)
                ));
            }
            out.push('\n');
        }
        _ => out.push_str("No configuration.\n\n"),
    }
    for c in &spec.credentials {
        out.push_str(&format!(
            "Credential slot `{}` ({}{}): {}\n\n",
            c.name,
            if c.required { "required" } else { "optional" },
            if c.types.is_empty() {
                String::new()
            } else {
                format!(
                    "; types {}",
                    c.types
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            c.description
        ));
    }
    let output = &spec.output_schema;
    match output.get("properties").and_then(Value::as_object) {
        Some(props) if !props.is_empty() => {
            let fields: Vec<String> = props.keys().map(|k| format!("`{k}`")).collect();
            out.push_str(&format!(
                "Output: an object with {}.\n\n",
                fields.join(", ")
            ));
        }
        _ => {}
    }
    for ex in &spec.examples {
        let node =
            serde_json::json!({ "id": "example", "type": spec.type_id, "config": ex.config });
        out.push_str(&format!(
            "Example — {}:\n\n```json\n{}\n```\n\n",
            ex.title,
            serde_json::to_string_pretty(&node).unwrap_or_default()
        ));
    }
    out
}

/// The whole `docs/nodes.md`.
pub fn catalog_markdown(specs: &[NodeSpec]) -> String {
    let mut out = String::from(
        "# Nodes\n\n<!-- Generated by `orcheo nodes --markdown > docs/nodes.md`; a test fails when it is stale. -->\n\n\
         Every node takes a `config` object; string values may contain `{{ expressions }}` (see\n\
         [expressions.md](expressions.md)) unless marked *not a template*. Each node's output is kept\n\
         under `results.<node id>`; use `assign` to copy parts of it into state.\n\n",
    );
    let mut cats: Vec<&str> = Vec::new();
    for s in specs {
        if !cats.contains(&s.category.as_str()) {
            cats.push(&s.category);
        }
    }
    for c in &cats {
        let names: Vec<String> = specs
            .iter()
            .filter(|s| s.category == *c)
            .map(|s| format!("[`{}`](#{})", s.type_id, anchor(s)))
            .collect();
        out.push_str(&format!("- **{c}**: {}\n", names.join(", ")));
    }
    out.push('\n');
    for s in specs {
        out.push_str(&node_section(s));
    }
    // Exactly one newline at the end, whatever the last section ends with, so the file and
    // `orcheo nodes --markdown` agree.
    format!("{}\n", out.trim_end())
}

fn anchor(s: &NodeSpec) -> String {
    format!("{} — {}", s.type_id, s.name)
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}
