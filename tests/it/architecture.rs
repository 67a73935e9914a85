//! The shape of the code: each folder of `src/` is a layer that imports only the layers below it,
//! no module imports one that imports it back, directly or through others (checked between layers
//! and between the modules of each layer), and SQL is written only in the state module
//! (`src/state/`).

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

/// Module (its path cut to `depth` names) → the modules its code names as `crate::…` or
/// `super::…`, cut the same way (comments aside).
fn imports(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let modules: Vec<(Vec<String>, std::path::PathBuf)> = files
        .into_iter()
        .map(|f| (module_of(f.strip_prefix(&src).unwrap()), f))
        .filter(|(m, _)| m[0] != "lib" && m[0] != "main")
        .collect();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    let cut = |path: &[String]| -> String {
        // The longest prefix naming a module, at most `depth` names long.
        let mut n = path.len().min(depth);
        while n > 1 && !known.contains(&path[..n]) {
            n -= 1;
        }
        path[..n].join("::")
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let own = cut(module);
        let text = std::fs::read_to_string(file).unwrap();
        let deps = graph.entry(own.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (prefix, base) in [
                ("crate::", &[][..]),
                ("super::", &module[..module.len() - 1]),
            ] {
                for (i, _) in code.match_indices(prefix) {
                    if i > 0
                        && code[..i]
                            .ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                    {
                        continue;
                    }
                    let names: Vec<String> = code[i + prefix.len()..]
                        .split("::")
                        .map(|p| {
                            p.chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect::<String>()
                        })
                        .take_while(|p| !p.is_empty())
                        .collect();
                    let mut path = base.to_vec();
                    path.extend(names);
                    if path.is_empty() {
                        continue;
                    }
                    let dep = cut(&path);
                    if dep != own {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    graph
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

/// The layers, lowest first.
const LAYERS: [&str; 8] = [
    "domain", "config", "store", "state", "sync", "engine", "service", "cli",
];

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let graph = imports(1);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let Some(own) = rank(module) else {
            wrong.push(format!("{module} is not a layer of {LAYERS:?}"));
            continue;
        };
        for d in deps {
            if rank(d).is_none_or(|r| r >= own) {
                wrong.push(format!("{module} imports {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports(2);
    assert!(graph.len() > 30, "read too few modules: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m, &mut vec![m.clone()]))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
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
