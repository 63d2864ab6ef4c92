//! Structural diff of two workflow documents: nodes added, removed and changed (with the
//! changed fields as JSON Pointers), edges added and removed, and every other change.

use serde::Serialize;
use serde_json::Value;

/// One changed value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// JSON Pointer of the value, relative to the thing that changed.
    pub path: String,
    /// The old value (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The new value (absent when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// A node that exists in both versions but differs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeChange {
    /// The node id.
    pub id: String,
    /// What differs inside the node.
    pub changes: Vec<Change>,
}

/// The difference between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WorkflowDiff {
    /// Nodes only in the newer version.
    #[schema(value_type = Vec<Object>)]
    pub nodes_added: Vec<Value>,
    /// Nodes only in the older version.
    #[schema(value_type = Vec<Object>)]
    pub nodes_removed: Vec<Value>,
    /// Nodes in both that differ.
    pub nodes_changed: Vec<NodeChange>,
    /// Edges only in the newer version.
    #[schema(value_type = Vec<Object>)]
    pub edges_added: Vec<Value>,
    /// Edges only in the older version.
    #[schema(value_type = Vec<Object>)]
    pub edges_removed: Vec<Value>,
    /// Every other change (name, state, settings, triggers, …).
    pub other: Vec<Change>,
    /// True when the documents are the same.
    pub identical: bool,
}

fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Differences between two JSON values as pointer-addressed changes.
pub fn json_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", escape(k));
                match y.get(k) {
                    Some(vb) => json_diff(va, vb, &p, out),
                    None => out.push(Change {
                        path: p,
                        before: Some(va.clone()),
                        after: None,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(Change {
                        path: format!("{path}/{}", escape(k)),
                        before: None,
                        after: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(va, vb, &format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(Change {
            path: path.to_string(),
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
        _ => {}
    }
}

fn list<'a>(doc: &'a Value, key: &str) -> Vec<&'a Value> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The structural diff from `old` to `new`.
pub fn diff(old: &Value, new: &Value) -> WorkflowDiff {
    let id = |n: &Value| {
        n.get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let old_nodes = list(old, "nodes");
    let new_nodes = list(new, "nodes");
    let mut d = WorkflowDiff {
        nodes_added: Vec::new(),
        nodes_removed: Vec::new(),
        nodes_changed: Vec::new(),
        edges_added: Vec::new(),
        edges_removed: Vec::new(),
        other: Vec::new(),
        identical: old == new,
    };
    for n in &new_nodes {
        match old_nodes.iter().find(|o| id(o) == id(n)) {
            None => d.nodes_added.push((*n).clone()),
            Some(o) => {
                let mut changes = Vec::new();
                json_diff(o, n, "", &mut changes);
                if !changes.is_empty() {
                    d.nodes_changed.push(NodeChange { id: id(n), changes });
                }
            }
        }
    }
    for o in &old_nodes {
        if !new_nodes.iter().any(|n| id(n) == id(o)) {
            d.nodes_removed.push((*o).clone());
        }
    }
    let old_edges = list(old, "edges");
    let new_edges = list(new, "edges");
    for e in &new_edges {
        if !old_edges.contains(e) {
            d.edges_added.push((*e).clone());
        }
    }
    for e in &old_edges {
        if !new_edges.contains(e) {
            d.edges_removed.push((*e).clone());
        }
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("nodes");
            m.remove("edges");
        }
        v
    };
    json_diff(&strip(old), &strip(new), "", &mut d.other);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_edges_and_settings() {
        let a = json!({"name": "a", "nodes": [{"id": "x", "type": "noop"}, {"id": "y", "type": "debug", "config": {"m": 1}}],
                       "edges": [{"source": "__start__", "target": "x"}, {"source": "x", "target": "y"}]});
        let b = json!({"name": "b", "settings": {"max_concurrency": 2},
                       "nodes": [{"id": "y", "type": "debug", "config": {"m": 2, "n/o": true}}, {"id": "z", "type": "noop"}],
                       "edges": [{"source": "__start__", "target": "y"}, {"source": "y", "target": "z"}]});
        let d = diff(&a, &b);
        assert!(!d.identical);
        assert_eq!(d.nodes_added, vec![json!({"id": "z", "type": "noop"})]);
        assert_eq!(d.nodes_removed, vec![json!({"id": "x", "type": "noop"})]);
        assert_eq!(d.nodes_changed.len(), 1);
        let paths: Vec<&str> = d.nodes_changed[0]
            .changes
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(paths, vec!["/config/m", "/config/n~1o"]);
        assert_eq!(d.edges_added.len(), 2);
        assert_eq!(d.edges_removed.len(), 2);
        let other: Vec<&str> = d.other.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(other, vec!["/name", "/settings"]);
        assert!(diff(&a, &a).identical);
    }
}
