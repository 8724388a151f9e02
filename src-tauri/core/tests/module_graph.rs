//! The core's subsystems (its top-level modules) import each other without a cycle, the
//! shared vocabulary imports nothing of the crate, and docs/design.md draws the graph as it is.
//!
//! The graph is read from the sources: every `crate::<module>` a file of one module names is an
//! edge to that module. A new edge that closes a cycle, or one the drawing lacks, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const DESIGN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/design.md");

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/pool/state.rs` → `pool`, `src/live.rs` → `live`.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(SRC).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The modules `text` names as `crate::<module>`.
fn named_modules(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        // `headroom_core::` and the like are other crates' paths, not this one's.
        .filter(|(at, _)| {
            !text[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .filter_map(|(at, _)| {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn imports() -> Graph {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(named_modules(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

/// The drawing: the lines `module → a, b` (or `module → nothing`) in the block after the
/// `<!-- module graph -->` marker.
fn drawn() -> Graph {
    let text = std::fs::read_to_string(DESIGN).expect("read docs/design.md");
    let block = text
        .split("<!-- module graph -->")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("docs/design.md has a ``` block after <!-- module graph -->");
    block
        .lines()
        .filter_map(|line| line.split_once('→'))
        .map(|(module, deps)| {
            let deps = deps
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty() && *d != "nothing")
                .map(String::from)
                .collect();
            (module.trim().to_string(), deps)
        })
        .collect()
}

/// A cycle, if there is one: the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn show(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(module, deps)| {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            let deps = if deps.is_empty() {
                "nothing".to_string()
            } else {
                deps.join(", ")
            };
            format!("{module} → {deps}\n")
        })
        .collect()
}

#[test]
fn the_subsystems_import_each_other_without_a_cycle() {
    let graph = imports();
    assert!(graph.len() >= 10, "too few modules found: {graph:?}");
    if let Some(cycle) = cycle(&graph) {
        panic!("import cycle: {}\n\n{}", cycle.join(" → "), show(&graph));
    }
}

#[test]
fn the_shared_vocabulary_imports_nothing_of_the_crate() {
    let graph = imports();
    assert_eq!(
        graph.get("vocab"),
        Some(&BTreeSet::new()),
        "{}",
        show(&graph)
    );
}

#[test]
fn the_design_notes_draw_the_graph_as_it_is() {
    let (actual, drawn) = (imports(), drawn());
    assert!(
        actual == drawn,
        "docs/design.md's module graph is out of date; the sources say:\n\n{}",
        show(&actual)
    );
}

#[test]
fn the_graph_reader_sees_paths_and_not_other_crates() {
    let names = named_modules(
        "use crate::pool::{Pool, PoolEvent};\nuse headroom_core::config::X;\nlet x = crate::vocab::memory_size(1);",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["pool", "vocab"],
        "a path of another crate is not an edge"
    );
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["a".to_string()].into());
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
