//! The shape of the code: each folder of `src/` is a layer that imports only the layers
//! [`ALLOWED`] lists for it (no config type below the engine, no store in the state), no module
//! imports one that imports it back, directly or through others (checked between layers and
//! between the modules of each layer, a module and its children included), and SQL is written
//! only in the state module (`src/state/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A file's module path (`engine::repair` for `src/engine/repair.rs`, `engine` for its `mod.rs`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every file of `src/` but `lib.rs` and `main.rs`: its module path and its text.
fn sources() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    files
        .into_iter()
        .map(|f| (module_of(f.strip_prefix(&src).unwrap()), f))
        .filter(|(m, _)| m[0] != "lib" && m[0] != "main")
        .map(|(m, f)| (m, std::fs::read_to_string(f).unwrap()))
        .collect()
}

/// The module paths a line of code names (comments aside): `crate::…`, `super::…` and
/// `self::…` paths, and bare paths that start with a child module's name (`read::Quiet` in
/// `engine/mod.rs`), `use` groups (`{a::X, b}`) opened.
fn paths_in(line: &str, module: &[String], known: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or("");
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b':'));
        if starts && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            let end = path_end(code, i);
            expand(&code[i..end], module, known, &mut found);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// Where the path starting at `from` ends (a `use` group counted whole).
fn path_end(code: &str, from: usize) -> usize {
    let bytes = code.as_bytes();
    let (mut i, mut depth) = (from, 0);
    while i < code.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' if depth == 0 => break,
            b'}' => depth -= 1,
            c if depth > 0 || c.is_ascii_alphanumeric() || c == b'_' || c == b':' => {}
            _ => break,
        }
        i += 1;
    }
    i
}

/// Resolves one path (or group) written in `module` to the module paths it names.
fn expand(
    text: &str,
    module: &[String],
    known: &BTreeSet<Vec<String>>,
    out: &mut Vec<Vec<String>>,
) {
    let (head, group) = match text.find('{') {
        Some(b) => (
            &text[..b],
            Some(&text[b + 1..text.rfind('}').unwrap_or(text.len())]),
        ),
        None => (text, None),
    };
    if !head.contains("::") {
        return; // a name, or `pub(super)`
    }
    let mut path = Vec::new();
    // Whether the path so far is anchored (by `crate`, `self` or `super`).
    let mut anchored = false;
    for name in head.split("::").map(str::trim).filter(|n| !n.is_empty()) {
        match (anchored, name) {
            (false, "crate") => path.push(String::new()),
            (false, "self") => path.extend(module.iter().cloned()),
            (false, "super") => path.extend(module[..module.len() - 1].iter().cloned()),
            (true, "super") => {
                path.pop();
            }
            (false, _) => {
                // A bare name is a child module of this one, or not a module path at all.
                let mut child = module.to_vec();
                child.push(name.to_string());
                if !known.contains(&child) {
                    return;
                }
                path = child;
            }
            _ => path.push(name.to_string()),
        }
        anchored = true;
    }
    if path.first().is_some_and(String::is_empty) {
        path.remove(0);
    }
    match group {
        Some(items) if !path.is_empty() || head.trim() == "crate::" => {
            for item in split_group(items) {
                let mut base = path.clone();
                expand_in_group(item, &mut base, out);
            }
        }
        _ if !path.is_empty() => out.push(path),
        _ => {}
    }
}

/// A `use` group's item is relative to the group's path.
fn expand_in_group(item: &str, base: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let item = item.trim();
    if item.is_empty() || item == "self" {
        out.push(base.clone());
        return;
    }
    let (head, rest) = match item.find(['{']) {
        Some(b) => (&item[..b], &item[b..]),
        None => (item, ""),
    };
    for name in head.split("::").map(str::trim).filter(|n| !n.is_empty()) {
        base.push(name.to_string());
    }
    if rest.is_empty() {
        out.push(base.clone());
    } else {
        for sub in split_group(&rest[1..rest.rfind('}').unwrap_or(rest.len())]) {
            let mut b = base.clone();
            expand_in_group(sub, &mut b, out);
        }
    }
}

/// The items of a `use` group, split at its top-level commas.
fn split_group(items: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in items.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&items[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&items[start..]);
    parts
}

/// Module (its path cut to `depth` names) → the modules its code names, cut the same way.
fn imports_of(
    sources: &[(Vec<String>, String)],
    depth: usize,
) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
    let cut = |path: &[String]| -> String {
        // The longest prefix naming a module, at most `depth` names long.
        let mut n = path.len().min(depth);
        while n > 1 && !known.contains(&path[..n]) {
            n -= 1;
        }
        path[..n].join("::")
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in sources {
        let own = cut(module);
        let deps = graph.entry(own.clone()).or_default();
        // Multi-line `use` groups are read as one line; a file's tests (its last part) aside.
        let joined = join_use_groups(without_tests(text));
        for line in joined.lines() {
            for path in paths_in(line, module, &known) {
                let dep = cut(&path);
                if dep != own && !dep.is_empty() {
                    deps.insert(dep);
                }
            }
        }
    }
    graph
}

/// A file's text up to its inline test module (`#[cfg(test)] mod tests { … }`).
fn without_tests(text: &str) -> &str {
    let inline = text.match_indices("#[cfg(test)]").find(|(i, m)| {
        let after = text[i + m.len()..].trim_start();
        after.starts_with("mod ") && after.lines().next().is_some_and(|l| l.contains('{'))
    });
    inline.map_or(text, |(i, _)| &text[..i])
}

/// The text with each `use …;` on one line (comments dropped).
fn join_use_groups(text: &str) -> String {
    let mut out = String::new();
    let mut open = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let statement = code
            .trim_start()
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        if open || statement.starts_with("use ") {
            out.push_str(code.trim());
            open = !code.contains(';');
            if open {
                out.push(' ');
                continue;
            }
        } else {
            out.push_str(code);
        }
        out.push('\n');
    }
    out
}

fn imports(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    imports_of(&sources(), depth)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A cycle through `from`, as the modules on it.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(path.last().unwrap()).into_iter().flatten() {
        if next == from {
            let mut c = path.clone();
            c.push(next.clone());
            return Some(c);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(c) = cycle_from(graph, from, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

/// Each layer and the layers it may import. The engine turns configuration into plain values
/// for the layers below it: they never see a config type, and the state never sees a store.
const ALLOWED: [(&str, &[&str]); 8] = [
    ("domain", &[]),
    ("config", &["domain"]),
    ("store", &["domain"]),
    ("state", &["domain"]),
    ("sync", &["domain"]),
    ("engine", &["domain", "config", "store", "state", "sync"]),
    (
        "service",
        &["domain", "config", "store", "state", "sync", "engine"],
    ),
    (
        "cli",
        &[
            "domain", "config", "store", "state", "sync", "engine", "service",
        ],
    ),
];

/// The imports between layers that [`ALLOWED`] does not list.
fn edges_not_allowed(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, deps) in graph {
        let Some((_, allowed)) = ALLOWED.iter().find(|(l, _)| l == module) else {
            wrong.push(format!("{module} is not a layer"));
            continue;
        };
        for d in deps.iter().filter(|d| !allowed.contains(&d.as_str())) {
            wrong.push(format!("{module} imports {d}"));
        }
    }
    wrong
}

#[test]
fn each_layer_imports_only_the_layers_it_may() {
    let wrong = edges_not_allowed(&imports(1));
    assert!(
        wrong.is_empty(),
        "imports not allowed:\n{}",
        wrong.join("\n")
    );
}

/// The checks above find each forbidden import however it is written: a `crate::` path, a
/// `use` group, a path in code, `super::` up out of a layer.
#[test]
fn a_forbidden_import_is_found_however_it_is_written() {
    let plain = sources();
    assert!(edges_not_allowed(&imports_of(&plain, 1)).is_empty());
    let file = |m: &str| m.split("::").map(String::from).collect::<Vec<_>>();
    let cases = [
        (
            "state::pairs",
            "use crate::config::Config;",
            "state imports config",
        ),
        (
            "store::caldav",
            "use crate::{config::{ServerConfig, ServerKind}, domain};",
            "store imports config",
        ),
        (
            "sync::plan",
            "    let x = crate::config::Extras::Keep;",
            "sync imports config",
        ),
        (
            "state::observe",
            "use crate::store::http::HttpStats;",
            "state imports store",
        ),
        (
            "store::vdir",
            "use super::super::engine::Engine;",
            "store imports engine",
        ),
        (
            "domain::window",
            "use crate::sync::Plan;",
            "domain imports sync",
        ),
    ];
    for (module, line, expected) in cases {
        let mut changed = plain.clone();
        let at = changed
            .iter()
            .position(|(m, _)| *m == file(module))
            .unwrap();
        changed[at].1.insert_str(0, &format!("{line}\n"));
        let wrong = edges_not_allowed(&imports_of(&changed, 1));
        assert_eq!(wrong, [expected.to_string()], "{module}: {line}");
    }
}

/// A bare path to a child module counts (`read::Quiet` in `engine/mod.rs`), so a module and its
/// child that import each other are a circle.
#[test]
fn a_circle_through_a_bare_child_path_is_found() {
    let file = |m: &str| m.split("::").map(String::from).collect::<Vec<_>>();
    let sources = vec![
        (
            file("engine"),
            "mod read;\nfn f() { let x = read::Quiet; }\n".to_string(),
        ),
        (
            file("engine::read"),
            "use super::{Engine, PassError};\n".to_string(),
        ),
    ];
    let graph = imports_of(&sources, 2);
    assert_eq!(graph["engine"], ["engine::read".to_string()].into());
    assert_eq!(graph["engine::read"], ["engine".to_string()].into());
}

/// Between layers' rooms (`engine::read`) and between rooms' own rooms (`service::web::page`).
#[test]
fn no_module_imports_one_that_imports_it_back() {
    for depth in [2, 3] {
        let graph = imports(depth);
        assert!(graph.len() > 30, "read too few modules: {graph:?}");
        let cycles: Vec<String> = graph
            .keys()
            .filter_map(|m| cycle_from(&graph, m, &mut vec![m.clone()]))
            .map(|c| c.join(" → "))
            .collect();
        assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
    }
}

#[test]
fn sql_lives_only_in_the_state_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("state")))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .any(|l| l.split("//").next().unwrap_or("").contains("sqlx::"))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "sqlx used outside src/state/: {outside:?}"
    );
}
