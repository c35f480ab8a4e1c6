//! The tree's shape: imports only run down the layers of `agent/src`, and never in a circle.
//!
//! Reads the sources (every `crate::...` and `super::...` path) rather than
//! trusting review: a new import that points up, or that closes a circle,
//! fails here with the file and the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a module may use its own layer and those below.
/// `server` and `host` share a level but must not use each other.
const LAYERS: [(&str, u8); 10] = [
    ("rules", 0),
    ("locks", 0),
    ("clock", 0),
    ("config", 1),
    ("log_fields", 2),
    ("transport", 2),
    ("raft", 3),
    ("server", 4),
    ("host", 4),
    ("cli", 5),
];

fn level(top: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, l)| *l)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file under src (without lib.rs and main.rs), by module path.
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                match name.as_str() {
                    "mod" => {}
                    "lib" | "main" if prefix.is_empty() => continue,
                    _ => module.push(name),
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &[], &mut out);
    out
}

/// The `crate::a::b` and `super::a` paths a file names (code only: line
/// comments are skipped), made absolute.
fn referenced_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (start, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let before = code[..start].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[start..];
            let path: Vec<&str> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let mut absolute: Vec<String> = Vec::new();
            let mut parts = path.iter().peekable();
            if parts.peek() == Some(&&"crate") {
                parts.next();
            } else {
                // `super` is the parent module (for a mod.rs too: its module
                // path is already its directory's); each further `super` one up.
                let mut base = module.to_vec();
                while parts.peek() == Some(&&"super") {
                    parts.next();
                    base.pop();
                }
                absolute = base;
            }
            absolute.extend(parts.map(|s| s.to_string()));
            out.push(absolute);
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a module file.
fn owner(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// Module -> modules it uses (outside its own subtree).
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut edges = BTreeMap::new();
    for (module, path) in &modules {
        let text = std::fs::read_to_string(path).expect("read source");
        let mut uses = BTreeSet::new();
        for referenced in referenced_paths(module, &text) {
            if let Some(target) = owner(&referenced, &modules) {
                // A module's use of its own children (declaring, re-exporting)
                // is its structure, not a dependency; nor is its use of itself.
                if !target.starts_with(module) {
                    uses.insert(target);
                }
            }
        }
        edges.insert(module.clone(), uses);
    }
    edges
}

#[test]
fn imports_only_run_down_the_layers() {
    let mut wrong = Vec::new();
    for (module, uses) in graph() {
        let Some(from) = level(&module[0]) else {
            wrong.push(format!("{}: not in a known layer", module.join("::")));
            continue;
        };
        for used in uses {
            let to = level(&used[0]).unwrap_or(u8::MAX);
            let sideways = from == to && module[0] != used[0];
            if to > from || sideways {
                wrong.push(format!("{} uses {}", module.join("::"), used.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = graph();
    // Depth-first search for a back edge; report the circle it closes.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        circles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            let circle: Vec<String> = stack[at..]
                .iter()
                .chain([node])
                .map(|m| m.join("::"))
                .collect();
            circles.push(circle.join(" -> "));
            return;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, circles);
        }
        stack.pop();
        done.insert(node.clone());
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn every_module_opens_with_a_short_line_saying_what_it_is() {
    let mut wrong = Vec::new();
    for path in modules().values() {
        let text = std::fs::read_to_string(path).expect("read source");
        let first = text.lines().next().unwrap_or("");
        let is_tests = path.file_name().is_some_and(|n| n == "tests.rs");
        if (!first.starts_with("//! ") && !is_tests) || first.chars().count() >= 100 {
            wrong.push(format!("{}: {first:?}", path.display()));
        }
    }
    assert!(wrong.is_empty(), "first lines:\n{}", wrong.join("\n"));
}

#[test]
fn the_checks_see_the_tree() {
    // Guards against a check that passes because it read nothing.
    let graph = graph();
    assert!(graph.len() > 30, "{} modules", graph.len());
    let agent = vec!["host".to_string(), "agent".to_string()];
    let uses = &graph[&agent];
    assert!(
        uses.contains(&vec!["rules".to_string(), "phases".to_string()]),
        "{uses:?}"
    );
    assert!(uses.contains(&vec!["config".to_string()]), "{uses:?}");
}
