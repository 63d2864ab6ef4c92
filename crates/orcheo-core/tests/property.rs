//! Property test: random acyclic graphs (conditional edges, else edges, fan-out, fan-in) give
//! the same final state on the engine as on a simple sequential reference interpreter, and
//! resuming from any checkpoint reproduces that state.

mod common;

use common::*;
use orcheo_core::checkpoint::RunStatus;
use orcheo_core::engine::RunOptions;
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    /// Taken when `sum % k == r`.
    Cond(u64, u64),
    Else,
}

#[derive(Debug, Clone)]
struct Graph {
    n: usize,
    /// (source, target, kind); source None is `__start__`.
    edges: Vec<(Option<usize>, usize, Kind)>,
}

fn graph_strategy() -> impl Strategy<Value = Graph> {
    (2usize..9).prop_flat_map(|n| {
        let edge_slots = n * n;
        (
            Just(n),
            proptest::collection::vec(0usize..n, n), // one parent per node
            proptest::collection::vec((0usize..n, 0usize..n, 0u8..6), 0..edge_slots.min(14)), // extra edges
            proptest::collection::vec(0u8..6, n), // kind of the parent edge
        )
            .prop_map(|(n, parents, extra, parent_kinds)| {
                let kind_of = |k: u8| match k {
                    0 => Kind::Cond(2, 0),
                    1 => Kind::Cond(3, 1),
                    2 => Kind::Cond(2, 1),
                    _ => Kind::Plain,
                };
                let mut edges: Vec<(Option<usize>, usize, Kind)> = vec![(None, 0, Kind::Plain)];
                for j in 1..n {
                    let p = parents[j] % j;
                    edges.push((Some(p), j, kind_of(parent_kinds[j])));
                }
                for (a, b, k) in extra {
                    let (s, t) = if a < b {
                        (a, b)
                    } else if b < a {
                        (b, a)
                    } else {
                        continue;
                    };
                    let kind = if k == 5 { Kind::Else } else { kind_of(k) };
                    edges.push((Some(s), t, kind));
                }
                // Drop duplicates, keep one else edge per source, and only where the source
                // has a conditional edge.
                let mut seen = Vec::new();
                edges.retain(|e| {
                    let key = (e.0, e.1, format!("{:?}", e.2));
                    let dup = seen.contains(&key)
                        || (e.2 == Kind::Else
                            && seen.iter().any(|(s, _, k)| *s == e.0 && k == "Else"));
                    if !dup {
                        seen.push(key);
                    }
                    !dup
                });
                let has_cond = |s: Option<usize>, edges: &Vec<(Option<usize>, usize, Kind)>| {
                    edges
                        .iter()
                        .any(|(x, _, k)| *x == s && matches!(k, Kind::Cond(..)))
                };
                let snapshot = edges.clone();
                edges.retain(|(s, _, k)| *k != Kind::Else || has_cond(*s, &snapshot));
                Graph { n, edges }
            })
    })
}

fn to_doc(g: &Graph) -> Value {
    let nodes: Vec<Value> = (0..g.n)
        .map(|j| {
            emit(
                &format!("n{j}"),
                json!({"update": {"sum": j + 1, "trail": format!("n{j}"), "last": "{{ state.sum }}", "maxv": (j * 7) % 5}}),
            )
        })
        .collect();
    let edges: Vec<Value> = g
        .edges
        .iter()
        .map(|(s, t, k)| {
            let source = s.map_or("__start__".to_string(), |s| format!("n{s}"));
            let mut e = json!({"source": source, "target": format!("n{t}")});
            match k {
                Kind::Plain => {}
                Kind::Cond(m, r) => {
                    e["condition"] = json!(format!("{{{{ state.sum % {m} == {r} }}}}"))
                }
                Kind::Else => e["kind"] = json!("else"),
            }
            e
        })
        .collect();
    json!({
        "state": {
            "sum": {"reducer": "add", "default": 0},
            "trail": {"reducer": "append", "default": []},
            "last": {"default": -1},
            "maxv": {"reducer": "max"}
        },
        "settings": {"max_concurrency": 3},
        "nodes": nodes,
        "edges": edges
    })
}

/// The reference: supersteps executed one node at a time, no concurrency, no checkpoints.
fn reference(g: &Graph) -> Value {
    let reach = |from: usize, to: usize| {
        let mut stack = vec![from];
        let mut seen = vec![false; g.n];
        while let Some(x) = stack.pop() {
            for (s, t, _) in &g.edges {
                if *s == Some(x) && !seen[*t] {
                    if *t == to {
                        return true;
                    }
                    seen[*t] = true;
                    stack.push(*t);
                }
            }
        }
        false
    };
    let is_join = |j: usize| {
        let mut srcs: Vec<Option<usize>> = g
            .edges
            .iter()
            .filter(|(_, t, _)| *t == j)
            .map(|(s, _, _)| *s)
            .collect();
        srcs.dedup();
        srcs.sort();
        srcs.dedup();
        srcs.len() > 1
    };
    let route = |src: Option<usize>, sum: u64, out: &mut Vec<usize>| {
        let mut cond_taken = false;
        for (s, t, k) in &g.edges {
            if *s != src {
                continue;
            }
            match k {
                Kind::Plain => out.push(*t),
                Kind::Cond(m, r) if sum % m == *r => {
                    cond_taken = true;
                    out.push(*t);
                }
                _ => {}
            }
        }
        if !cond_taken {
            for (s, t, k) in &g.edges {
                if *s == src && *k == Kind::Else {
                    out.push(*t);
                }
            }
        }
    };
    let (mut sum, mut trail, mut last, mut maxv): (u64, Vec<String>, i64, Option<u64>) =
        (0, Vec::new(), -1, None);
    let mut pending = Vec::new();
    route(None, sum, &mut pending);
    pending.sort();
    pending.dedup();
    while !pending.is_empty() {
        let mut runnable: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&j| !(is_join(j) && pending.iter().any(|&m| m != j && reach(m, j))))
            .collect();
        let mut deferred: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|j| !runnable.contains(j))
            .collect();
        if runnable.is_empty() {
            runnable = std::mem::take(&mut deferred);
        }
        let at_start = sum;
        for &j in &runnable {
            sum += j as u64 + 1;
            trail.push(format!("n{j}"));
            last = at_start as i64;
            let v = ((j * 7) % 5) as u64;
            maxv = Some(maxv.map_or(v, |m| m.max(v)));
        }
        let mut next = deferred;
        for &j in &runnable {
            route(Some(j), sum, &mut next);
        }
        next.sort();
        next.dedup();
        pending = next;
    }
    json!({"sum": sum, "trail": trail, "last": last, "maxv": maxv})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_match_the_reference(g in graph_strategy(), fork_at in 0usize..64) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = harness();
            let wf = h.compile(to_doc(&g));
            let out = h.run(&wf, json!({})).await;
            prop_assert_eq!(out.status, RunStatus::Completed);
            let expected = reference(&g);
            prop_assert_eq!(&out.state, &expected, "graph {:?}", g);
            // Resume from one checkpoint chosen at random: same final state.
            let cps = h.store.all(&out.run_id);
            let cp = &cps[fork_at % cps.len()];
            let forked = h.engine.fork(&wf, &out.run_id, cp.id, None, RunOptions::default()).await.unwrap();
            prop_assert_eq!(&forked.state, &expected, "fork from checkpoint {}", cp.id);
            Ok(())
        })?;
    }
}
