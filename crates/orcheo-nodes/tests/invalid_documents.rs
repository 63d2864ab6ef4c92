//! Broken workflow documents: each file in `tests/fixtures/invalid/` must be rejected with
//! exactly the problems listed for it in [`CASES`] (JSON Pointer path, code, a message
//! substring and optionally a fix substring). The table pins the validator's whole error
//! output, so a new false positive or a lost diagnosis fails here.

use orcheo_core::node::Catalog;
use orcheo_core::validate::{validate_text, Problem, Severity};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(orcheo_nodes::catalog);

/// One problem the validator must report.
struct Expect {
    path: &'static str,
    code: &'static str,
    message: &'static str,
    /// A substring of the fix; empty means "any non-empty fix".
    fix: &'static str,
}

const fn e(path: &'static str, code: &'static str, message: &'static str) -> Expect {
    Expect {
        path,
        code,
        message,
        fix: "",
    }
}

const fn ef(
    path: &'static str,
    code: &'static str,
    message: &'static str,
    fix: &'static str,
) -> Expect {
    Expect {
        path,
        code,
        message,
        fix,
    }
}

/// File stem → every error the validator must report for it (and no other error).
const CASES: &[(&str, &[Expect])] = &[
    // --- JSON and document structure (checked against the published schema) ---
    (
        "malformed-json",
        &[ef(
            "",
            "json.syntax",
            "not valid JSON: expected `,` or `}` at line 4 column 3",
            "missing comma",
        )],
    ),
    (
        "missing-format",
        &[ef(
            "",
            "document.missing_field",
            "\"format\"",
            "add \"format\"",
        )],
    ),
    (
        "missing-name",
        &[e("", "document.missing_field", "\"name\"")],
    ),
    (
        "wrong-format",
        &[ef(
            "/format",
            "document.format",
            "is \"orcheo.workflow/2\", but this version of Orcheo reads only \"orcheo.workflow/1\"",
            "set it to \"orcheo.workflow/1\"",
        )],
    ),
    (
        "unknown-top-level-field",
        &[ef(
            "",
            "document.unknown_field",
            "unknown field(s): setings",
            "did you mean `setings` → `settings`?",
        )],
    ),
    (
        "unknown-node-field",
        &[ef(
            "/nodes/0",
            "document.unknown_field",
            "unknown field(s): onError",
            "`on_error`",
        )],
    ),
    (
        "missing-node-type",
        &[ef(
            "/nodes/0",
            "document.missing_field",
            "missing the required field \"type\"",
            "add \"type\"",
        )],
    ),
    (
        "unknown-reducer",
        &[ef(
            "/state/tags/reducer",
            "document.enum",
            "\"concat\" is not one of the allowed values",
            "\"append\", \"merge\", \"deep_merge\"",
        )],
    ),
    (
        "unknown-trigger-type",
        &[ef(
            "/triggers/0/type",
            "document.enum",
            "\"schedule\" is not one of the allowed values",
            "\"manual\", \"webhook\", \"cron\", \"polling\"",
        )],
    ),
    (
        "bad-duration",
        &[ef(
            "/nodes/0/timeout",
            "document.duration",
            "invalid duration \"5 weeks\": unknown unit \"weeks\"",
            "\"30s\"",
        )],
    ),
    // --- Document-level semantics ---
    (
        "empty-name",
        &[e("/name", "document.name.empty", "empty name")],
    ),
    (
        "empty-workflow",
        &[ef(
            "/nodes",
            "graph.empty",
            "has no nodes",
            "edge from `__start__`",
        )],
    ),
    (
        "invalid-input-schema",
        &[ef(
            "/input_schema/properties/name/type",
            "input_schema.invalid",
            "\"text\" is not a JSON Schema type",
            "\"string\"",
        )],
    ),
    (
        "duplicate-trigger-id",
        &[e(
            "/triggers/1/id",
            "trigger.id.duplicate",
            "trigger id `nightly` is used more than once",
        )],
    ),
    (
        "recursion-limit-zero",
        &[e(
            "/settings/recursion_limit",
            "settings.recursion_limit",
            "recursion_limit is 0",
        )],
    ),
    (
        "retry-jitter-out-of-range",
        &[e(
            "/settings/retry/jitter",
            "retry.jitter",
            "jitter 1.5 is outside 0..=1",
        )],
    ),
    // --- State and reducers ---
    (
        "conflicting-reducers",
        &[e(
            "/state/messages",
            "state.reducer.conflict",
            "`messages` is declared twice with different reducers (append and replace)",
        )],
    ),
    (
        "reducer-incompatible-with-type",
        &[e(
            "/state/visits/reducer",
            "state.reducer.type",
            "the add reducer cannot work on a field of type string",
        )],
    ),
    (
        "default-incompatible-with-reducer",
        &[e(
            "/state/tags/default",
            "state.default.type",
            "the append reducer cannot start from a default that is an object",
        )],
    ),
    // --- Nodes ---
    (
        "unknown-node-type",
        &[ef(
            "/nodes/0/type",
            "node.type.unknown",
            "unknown node type `trasform`",
            "did you mean `transform`?",
        )],
    ),
    (
        "duplicate-node-id",
        &[e(
            "/nodes/1/id",
            "node.id.duplicate",
            "node id `notify` is already used by /nodes/0",
        )],
    ),
    (
        "invalid-node-id",
        &[ef(
            "/nodes/0/id",
            "node.id.invalid",
            "node id `send welcome` is not a valid id",
            "letters, digits",
        )],
    ),
    (
        "config-wrong-type",
        &[ef(
            "/nodes/0/config/all",
            "node.config.invalid",
            "\"yes\" is not of type \"boolean\"",
            "`transform` config schema",
        )],
    ),
    (
        "config-missing-required",
        &[e(
            "/nodes/0/config",
            "node.config.missing",
            "node `reject` (fail) needs config field \"message\"",
        )],
    ),
    (
        "config-unknown-field",
        &[ef(
            "/nodes/0/config",
            "node.config.unknown_field",
            "unknown config field(s) mesage",
            "did you mean `message`?",
        )],
    ),
    (
        "delay-bad-duration",
        &[ef(
            "/nodes/0/config/duration",
            "node.config.invalid",
            "invalid duration \"2 weeks\": unknown unit \"weeks\"",
            "\"30s\"",
        )],
    ),
    (
        "delay-without-duration",
        &[e(
            "/nodes/0/config",
            "node.config.invalid",
            "delay needs `duration` or `until`",
        )],
    ),
    (
        "if-else-condition-without-braces",
        &[ef(
            "/nodes/0/config/condition",
            "node.config.invalid",
            "condition \"input.amount > 100\" is plain text, which is always true",
            "\"{{ input.amount > 100 }}\"",
        )],
    ),
    (
        "transform-jq-syntax-error",
        &[e(
            "/nodes/0/config/expression",
            "node.config.invalid",
            "jq syntax error: expected closing bracket",
        )],
    ),
    (
        "switch-duplicate-case-name",
        &[e(
            "/nodes/0/config/cases/1/name",
            "node.config.invalid",
            "case name `urgent` is used twice",
        )],
    ),
    (
        "approval-duplicate-option",
        &[e(
            "/nodes/0/config/options",
            "node.config.invalid",
            "option `basic` appears twice",
        )],
    ),
    (
        "map-as-reserved-name",
        &[ef(
            "/nodes/0/map/as",
            "node.map.as",
            "`output` cannot name the map item",
            "state, input, results, output, index are taken",
        )],
    ),
    (
        "map-concurrency-zero",
        &[e(
            "/nodes/0/map/concurrency",
            "node.map.concurrency",
            "map concurrency is 0",
        )],
    ),
    (
        "retry-max-attempts-zero",
        &[ef(
            "/nodes/0/retry/max_attempts",
            "retry.max_attempts",
            "max_attempts is 0",
            "use 1 for no retries",
        )],
    ),
    (
        "retry-multiplier-below-one",
        &[e(
            "/nodes/0/retry/multiplier",
            "retry.multiplier",
            "multiplier 0.5 would shrink the delay",
        )],
    ),
    (
        "route-without-error-edge",
        &[ef(
            "/nodes/0/on_error",
            "node.on_error.no_route",
            "node `charge` routes errors but has no error edge",
            "\"kind\": \"error\"",
        )],
    ),
    // --- Expressions ---
    (
        "expression-syntax-in-config",
        &[e(
            "/nodes/0/config/template",
            "expression.syntax",
            "node `greet`: expression does not parse: syntax error",
        )],
    ),
    (
        "expression-syntax-in-edge-condition",
        &[e(
            "/edges/1/condition",
            "expression.syntax",
            "edge condition does not parse: syntax error",
        )],
    ),
    (
        "expression-syntax-in-assign",
        &[e(
            "/nodes/0/assign/summary",
            "expression.syntax",
            "assign expression for `summary` does not parse: syntax error",
        )],
    ),
    (
        "expression-syntax-in-map-over",
        &[e(
            "/nodes/0/map/over",
            "expression.syntax",
            "node `greet`: map.over does not parse: syntax error",
        )],
    ),
    // --- Edges ---
    (
        "dangling-edge-source",
        &[
            ef(
                "/edges/1/source",
                "edge.source.unknown",
                "edge source `fetsh` is not a node",
                "did you mean `fetch`?",
            ),
            e(
                "/nodes/1",
                "node.unreachable",
                "node `notify` is unreachable",
            ),
        ],
    ),
    (
        "dangling-edge-target",
        &[ef(
            "/edges/2/target",
            "edge.target.unknown",
            "edge target `archive` is not a node",
            "`__end__`",
        )],
    ),
    (
        "duplicate-edge",
        &[ef(
            "/edges/2",
            "edge.duplicate",
            "this edge repeats /edges/1 (fetch → notify)",
            "delete one",
        )],
    ),
    (
        "edge-into-start",
        &[e(
            "/edges/1/target",
            "edge.target.start",
            "cannot point at `__start__`",
        )],
    ),
    (
        "edge-out-of-end",
        &[
            e(
                "/edges/2/source",
                "edge.source.end",
                "cannot leave `__end__`",
            ),
            e(
                "/nodes/1",
                "node.unreachable",
                "node `report` is unreachable",
            ),
        ],
    ),
    (
        "error-edge-without-route",
        &[ef(
            "/edges/1/kind",
            "edge.error.unused",
            "error edge from `charge` never fires because its on_error is not `route`",
            "\"on_error\": \"route\"",
        )],
    ),
    (
        "timeout-edge-from-node-that-cannot-wait",
        &[e(
            "/edges/1/kind",
            "edge.timeout.unused",
            "a `delay` node never waits for input",
        )],
    ),
    (
        "branch-edge-unknown-branch",
        &[ef(
            "/edges/1/branch",
            "edge.branch.unknown",
            "node `large` has no branch `yes`",
            "true, false",
        )],
    ),
    (
        "branch-edge-from-node-without-branches",
        &[e(
            "/edges/1/branch",
            "edge.branch.unsupported",
            "`load` is a `transform` node, which does not choose branches",
        )],
    ),
    (
        "multiple-else-edges",
        &[e(
            "/edges/3",
            "edge.else.multiple",
            "node `check` has more than one else edge",
        )],
    ),
    (
        "else-edge-without-conditional-siblings",
        &[e(
            "/edges/2",
            "edge.else.pointless",
            "no conditional or branch edges",
        )],
    ),
    (
        "condition-on-else-edge",
        &[e(
            "/edges/2/condition",
            "edge.condition.kind",
            "else edges cannot have a condition",
        )],
    ),
    // --- Graph shape ---
    (
        "missing-entry-point",
        &[ef(
            "/edges",
            "graph.entry.missing",
            "no edge leaves `__start__`",
            "{\"source\": \"__start__\", \"target\": \"fetch\"}",
        )],
    ),
    (
        "unreachable-node",
        &[e(
            "/nodes/2",
            "node.unreachable",
            "node `cleanup` is unreachable",
        )],
    ),
    (
        "no-way-to-finish",
        &[
            ef(
                "/nodes/0",
                "node.no_finish",
                "node `poll` has no way to finish",
                "`__end__`",
            ),
            e(
                "/nodes/1",
                "node.no_finish",
                "node `wait` has no way to finish",
            ),
        ],
    ),
    // --- Many problems in one document, all reported in one pass ---
    (
        "several-problems",
        &[
            e(
                "/state/total/default",
                "state.default.type",
                "the add reducer cannot start from a default that is a string",
            ),
            e(
                "/settings/recursion_limit",
                "settings.recursion_limit",
                "recursion_limit is 0",
            ),
            e(
                "/nodes/2/config/expression",
                "node.config.invalid",
                "node `refund`: jq syntax error",
            ),
            e(
                "/nodes/3/id",
                "node.id.duplicate",
                "node id `refund` is already used by /nodes/2",
            ),
            e(
                "/edges/1/branch",
                "edge.branch.unknown",
                "node `check` has no branch `yes`",
            ),
            ef(
                "/edges/3/target",
                "edge.target.unknown",
                "edge target `notfy` is not a node",
                "did you mean `notify`?",
            ),
            e(
                "/nodes/4",
                "node.unreachable",
                "node `notify` is unreachable",
            ),
        ],
    ),
];

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

fn fixture_stems() -> BTreeSet<String> {
    let dir = fixtures_dir();
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn problems_of(stem: &str) -> Vec<Problem> {
    let path = fixtures_dir().join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match validate_text(&text, &CATALOG) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("    {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything wrong with one case, or nothing.
fn check_case(stem: &str, expected: &[Expect]) -> Vec<String> {
    let problems = problems_of(stem);
    let mut failures = Vec::new();
    if problems.is_empty() {
        failures.push("the document was accepted".to_string());
    }
    for want in expected {
        let found = problems.iter().any(|p| {
            p.path == want.path
                && p.code == want.code
                && p.message.contains(want.message)
                && p.fix.contains(want.fix)
        });
        if !found {
            failures.push(format!(
                "missing problem: path {:?}, code {}, message containing {:?}, fix containing {:?}",
                want.path, want.code, want.message, want.fix
            ));
        }
    }
    for p in &problems {
        if p.fix.trim().is_empty() {
            failures.push(format!("problem without a fix: {p}"));
        }
        if p.message.trim().is_empty() {
            failures.push(format!("problem without a message: {p}"));
        }
        if !(p.path.is_empty() || p.path.starts_with('/')) {
            failures.push(format!("path is not a JSON Pointer: {p}"));
        }
        let listed = expected
            .iter()
            .any(|w| w.path == p.path && w.code == p.code);
        if p.severity == Severity::Error && !listed {
            failures.push(format!("unexpected error: {p}"));
        }
    }
    if !failures.is_empty() {
        failures.push(format!("reported:\n{}", show(&problems)));
    }
    failures
}

#[test]
fn every_broken_document_is_rejected_with_the_expected_problems() {
    let mut report = Vec::new();
    for (stem, expected) in CASES {
        let failures = check_case(stem, expected);
        if !failures.is_empty() {
            report.push(format!("{stem}.json:\n  {}", failures.join("\n  ")));
        }
    }
    assert!(
        report.is_empty(),
        "{} of {} broken documents were not diagnosed as expected:\n\n{}",
        report.len(),
        CASES.len(),
        report.join("\n\n")
    );
}

#[test]
fn every_fixture_is_in_the_table_and_every_table_entry_has_a_fixture() {
    let on_disk = fixture_stems();
    let in_table: BTreeSet<String> = CASES.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(
        in_table.len(),
        CASES.len(),
        "a fixture is listed twice in CASES"
    );
    let unlisted: Vec<_> = on_disk.difference(&in_table).collect();
    let missing: Vec<_> = in_table.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "fixtures without an entry in CASES: {unlisted:?}; CASES entries without a file: {missing:?}"
    );
    assert!(
        on_disk.len() >= 35,
        "expected at least 35 broken documents, found {}",
        on_disk.len()
    );
    for (stem, expected) in CASES {
        assert!(!expected.is_empty(), "{stem}: no expected problems listed");
    }
}

#[test]
fn several_problems_are_reported_in_one_pass() {
    let problems = problems_of("several-problems");
    let errors: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    let codes: BTreeSet<&str> = errors.iter().map(|p| p.code.as_str()).collect();
    assert!(
        errors.len() >= 6 && codes.len() >= 6,
        "expected every problem of the document at once, got:\n{}",
        show(&problems)
    );
    // State, settings, node config, node ids, edges and the graph are all covered.
    for prefix in [
        "/state/",
        "/settings/",
        "/nodes/2/config",
        "/nodes/3/id",
        "/edges/",
    ] {
        assert!(
            errors.iter().any(|p| p.path.starts_with(prefix)),
            "no problem under {prefix}:\n{}",
            show(&problems)
        );
    }
}

#[test]
fn fixing_the_broken_part_makes_a_fixture_valid() {
    // Guards against fixtures that are rejected for some reason other than the one they are
    // named after: repairing exactly that part must make the document valid.
    let repairs: &[(&str, &str, &str)] = &[
        ("dangling-edge-target", "\"archive\"", "\"__end__\""),
        ("unknown-node-type", "\"trasform\"", "\"transform\""),
        ("config-unknown-field", "\"mesage\"", "\"message\""),
        ("bad-duration", "\"5 weeks\"", "\"5m\""),
        ("unknown-reducer", "\"concat\"", "\"union\""),
        (
            "if-else-condition-without-braces",
            "\"input.amount > 100\"",
            "\"{{ input.amount > 100 }}\"",
        ),
        ("wrong-format", "orcheo.workflow/2", "orcheo.workflow/1"),
        ("unknown-top-level-field", "\"setings\"", "\"settings\""),
        ("map-as-reserved-name", "\"output\" }", "\"guest\" }"),
        ("invalid-node-id", "send welcome", "send_welcome"),
    ];
    for (stem, from, to) in repairs {
        let path = fixtures_dir().join(format!("{stem}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{stem}: {from:?} not in the fixture");
        let repaired = text.replace(from, to);
        if let Err(problems) = validate_text(&repaired, &CATALOG) {
            panic!(
                "{stem}: still invalid after replacing {from} with {to}:\n{}",
                show(&problems)
            );
        }
    }
}
