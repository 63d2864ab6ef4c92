//! The published JSON Schema of the workflow document and the catalog's self-description:
//! examples conform, structural mistakes are rejected by the schema alone, the copy in
//! `docs/` is current, and every node type documents itself with working examples.

use orcheo_core::document::workflow_schema;
use orcheo_core::validate::{validate_text, validate_value};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const REGENERATE: &str = "cargo run -q -p orcheo -- schema > docs/workflow.schema.json";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

fn schema_validator() -> jsonschema::Validator {
    jsonschema::validator_for(&workflow_schema()).expect("the workflow schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path().as_str()))
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

#[test]
fn the_schema_accepts_every_example_workflow() {
    let dir = workspace_root().join("examples");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the examples directory {}: {e}", dir.display()));
    let validator = schema_validator();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let errors = schema_errors(&validator, &read_json(&path));
        if !errors.is_empty() {
            failures.push(format!("{}:\n  {}", path.display(), errors.join("\n  ")));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "examples that do not match the published schema:\n{}",
        failures.join("\n")
    );
    eprintln!("checked {checked} example workflow(s) in {}", dir.display());
}

#[test]
fn the_schema_accepts_a_minimal_document() {
    // Keeps the test above meaningful while the examples directory is still empty.
    let doc = json!({
        "format": "orcheo.workflow/1",
        "name": "Minimal",
        "nodes": [{ "id": "hello", "type": "noop" }],
        "edges": [{ "source": "__start__", "target": "hello" }]
    });
    assert_eq!(
        schema_errors(&schema_validator(), &doc),
        Vec::<String>::new()
    );
}

#[test]
fn the_schema_alone_rejects_the_structural_fixtures() {
    let validator = schema_validator();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    // (fixture, JSON Pointer where the schema must complain)
    let structural = [
        ("missing-format", ""),
        ("missing-name", ""),
        ("wrong-format", "/format"),
        ("unknown-top-level-field", ""),
        ("unknown-node-field", "/nodes/0"),
        ("missing-node-type", "/nodes/0"),
        ("unknown-reducer", "/state/tags/reducer"),
        ("unknown-trigger-type", "/triggers/0/type"),
        ("bad-duration", "/nodes/0/timeout"),
    ];
    for (stem, at) in structural {
        let doc = read_json(&dir.join(format!("{stem}.json")));
        let errors: Vec<_> = validator.iter_errors(&doc).collect();
        assert!(
            !errors.is_empty(),
            "{stem}.json passes the published schema but must not"
        );
        assert!(
            errors.iter().any(|e| e.instance_path().as_str() == at),
            "{stem}.json: no schema error at {at:?}; got {:?}",
            errors
                .iter()
                .map(|e| format!("{}: {e}", e.instance_path().as_str()))
                .collect::<Vec<_>>()
        );
    }
    // The semantic fixtures are well-formed: only the validator's deeper checks reject them.
    for stem in [
        "dangling-edge-target",
        "duplicate-node-id",
        "no-way-to-finish",
        "unknown-node-type",
        "expression-syntax-in-assign",
        "retry-jitter-out-of-range",
    ] {
        let doc = read_json(&dir.join(format!("{stem}.json")));
        assert_eq!(
            schema_errors(&validator, &doc),
            Vec::<String>::new(),
            "{stem}.json should be structurally valid"
        );
    }
}

#[test]
fn docs_copy_of_the_schema_is_current() {
    let path = workspace_root().join("docs/workflow.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&workflow_schema()).expect("schema serialises")
    );
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\ncreate it from the workspace root with:\n  {REGENERATE}",
            path.display()
        )
    });
    assert!(
        on_disk == generated,
        "docs/workflow.schema.json is stale: it differs from the schema generated from the \
         document types.\nregenerate it from the workspace root with:\n  {REGENERATE}"
    );
}

#[test]
fn every_node_type_describes_itself_with_working_examples() {
    let catalog = orcheo_nodes::catalog();
    let specs = catalog.specs();
    assert!(!specs.is_empty(), "the catalog is empty");
    let mut failures = Vec::new();
    for spec in &specs {
        let t = &spec.type_id;
        if spec.description.trim().is_empty() {
            failures.push(format!("{t}: empty description"));
        }
        if spec.name.trim().is_empty() || spec.category.trim().is_empty() {
            failures.push(format!("{t}: empty name or category"));
        }
        if catalog.validator(t).is_none() {
            failures.push(format!(
                "{t}: config schema does not compile, so configs would go unchecked"
            ));
        }
        if spec.examples.is_empty() {
            failures.push(format!("{t}: no example"));
        }
        for ex in &spec.examples {
            if ex.title.trim().is_empty() {
                failures.push(format!("{t}: an example has no title"));
            }
            let doc = json!({
                "format": "orcheo.workflow/1",
                "name": format!("example of {t}"),
                "nodes": [{ "id": "example", "type": t, "config": ex.config }],
                "edges": [{ "source": "__start__", "target": "example" }]
            });
            let text = serde_json::to_string(&doc).unwrap();
            for result in [
                validate_text(&text, &catalog),
                validate_value(&doc, &catalog),
            ] {
                if let Err(problems) = result {
                    failures.push(format!(
                        "{t}: example {:?} is invalid:\n    {}",
                        ex.title,
                        problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
