//! File nodes: write (append to or replace) a text file inside the directory the operator
//! allows with `ORCHEO_FILES_DIR`. Without that variable the node refuses to run, so a
//! workflow can never touch the server's files unless the operator opted in.

use async_trait::async_trait;
use orcheo_core::node::{Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// The environment variable naming the directory file nodes may use.
pub const FILES_DIR_ENV: &str = "ORCHEO_FILES_DIR";

/// Writes text to a file under the operator's files directory.
pub struct WriteFile;

/// How `write_file` writes.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Add to the end (creating the file).
    #[default]
    Append,
    /// Replace the file's content.
    Overwrite,
}

/// Config of `write_file`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileConfig {
    /// Path relative to the files directory (`ORCHEO_FILES_DIR`); `..` is not allowed.
    pub path: String,
    /// The text to write.
    pub content: String,
    /// `append` (default) or `overwrite`.
    #[serde(default)]
    pub mode: WriteMode,
    /// End the text with a newline when it lacks one (default true).
    #[serde(default = "yes")]
    pub newline: bool,
}

fn yes() -> bool {
    true
}

/// Output of `write_file`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteFileOutput {
    /// The path written, relative to the files directory.
    pub path: String,
    /// Bytes written.
    pub bytes: usize,
}

/// Resolves `rel` under `root`, refusing absolute paths and `..`.
pub fn resolve_under(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.trim().is_empty() {
        return Err("the path is empty".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path `{rel}` must stay inside the files directory: use a relative path without `..`"
                ))
            }
        }
    }
    Ok(root.join(p))
}

#[async_trait]
impl Node for WriteFile {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<WriteFileConfig, WriteFileOutput>(
            "write_file",
            "Write File",
            "files",
            "Appends text to (or replaces) a file inside the directory the operator allows with ORCHEO_FILES_DIR; refuses to run when that is unset.",
        )
        .icon("file-pen")
        .example(
            "Append a line per order",
            json!({ "path": "orders.log", "content": "{{ state.order_id }} {{ state.total }}" }),
        )
        .example(
            "Write a report",
            json!({ "path": "reports/daily.md", "content": "{{ state.report }}", "mode": "overwrite" }),
        )
    }

    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: WriteFileConfig = ctx.config_as()?;
        let root = std::env::var_os(FILES_DIR_ENV).ok_or_else(|| {
            NodeError::config(format!(
                "node `{}`: file access is disabled on this server; the operator enables it by setting {FILES_DIR_ENV} to a directory",
                ctx.node_id
            ))
        })?;
        let path = resolve_under(Path::new(&root), &c.path)
            .map_err(|e| NodeError::config(format!("node `{}`: {e}", ctx.node_id)))?;
        let mut text = c.content;
        if c.newline && !text.ends_with('\n') {
            text.push('\n');
        }
        let bytes = text.len();
        let mode = c.mode;
        let shown = c.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(mode == WriteMode::Append)
                .truncate(mode == WriteMode::Overwrite)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.flush()
        })
        .await
        .map_err(|e| NodeError::new("io", format!("writing `{shown}` was interrupted: {e}")))?
        .map_err(|e| NodeError::transient("io", format!("cannot write `{shown}`: {e}")))?;
        Ok(NodeOutput::output(json!({ "path": c.path, "bytes": bytes })).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let root = Path::new("/srv/files");
        assert_eq!(
            resolve_under(root, "a/b.txt").ok(),
            Some(root.join("a/b.txt"))
        );
        assert!(resolve_under(root, "../etc/passwd").is_err());
        assert!(resolve_under(root, "a/../../x").is_err());
        assert!(resolve_under(root, "/etc/passwd").is_err());
        assert!(resolve_under(root, "").is_err());
    }
}
