//! The workspace's parts depend one way: no source file imports another that imports it back,
//! directly or around a circle, in any crate; the ECS client reaches no Kubernetes crate, and
//! the simulator reaches neither the client nor Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a source file relative to its crate's `src/` (`controller::plan`;
/// `mod.rs` and `lib.rs`/`main.rs` name their folder / the crate root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Everything a file names with `crate::` or `super::` outside its `#[cfg(test)]` module, as
/// absolute module paths (as long as they can be, the item names included).
fn references(module: &[String], text: &str, is_mod_rs: bool) -> Vec<Vec<String>> {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    // Comments (doc links included) are not imports.
    let code: String = code
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    // In a folder's `mod.rs` (or a crate root), `use child::...` names a child module.
    let mut relative = Vec::new();
    if is_mod_rs {
        for line in code.lines() {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("pub use ")
                .or_else(|| line.strip_prefix("use "))
                .unwrap_or("");
            let first = rest.split("::").next().unwrap_or("");
            if !rest.is_empty()
                && !matches!(first, "crate" | "super" | "self" | "std" | "core")
                && first
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                let mut full = module.to_vec();
                full.push(first.to_string());
                relative.push(full);
            }
        }
    }
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        // Skip `$crate::` and identifiers ending in `crate`/`super`.
        if start > 0 {
            let prev = bytes[start - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b'$' {
                continue;
            }
        }
        let path: String = code[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segments.first() {
            Some(&"crate") => {
                segments.remove(0);
                Vec::new()
            }
            _ => {
                // `super` of a file module is its folder; of a `mod.rs`, the folder's parent.
                let mut base = module.to_vec();
                if !is_mod_rs {
                    base.pop();
                }
                while segments.first() == Some(&"super") {
                    segments.remove(0);
                    if segments.first() == Some(&"super") {
                        base.pop();
                    }
                }
                base
            }
        };
        // A brace group after the path (`use super::{a, b}`): each item is a reference.
        let after = &code[start + path.len()..];
        if let Some(group) = after.strip_prefix('{') {
            let group: String = group.chars().take_while(|c| *c != '}').collect();
            for item in group.split(',') {
                let item = item.trim().split(" as ").next().unwrap_or("").trim();
                if item.is_empty() || item == "self" {
                    continue;
                }
                let mut full = base.clone();
                full.extend(segments.iter().map(|s| s.to_string()));
                full.extend(item.split("::").map(str::to_string));
                out.push(full);
            }
        } else {
            base.extend(segments.iter().map(|s| s.to_string()));
            out.push(base);
        }
    }
    out.extend(relative);
    out
}

/// The file-level import graph of the crate whose sources are in `src`: file module → the
/// file modules it names.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = sources(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let is_mod_rs = matches!(
            file.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "lib.rs" | "main.rs")
        );
        let text = std::fs::read_to_string(file).expect("read source");
        let mut deps = BTreeSet::new();
        for reference in references(&module, &text, is_mod_rs) {
            // The longest prefix of the path that is a file module.
            let target = (1..=reference.len())
                .rev()
                .map(|n| reference[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target
                && target != module
            {
                deps.insert(target);
            }
        }
        g.insert(module, deps);
    }
    g
}

/// The import circles of `g` (each as the files on it), by depth-first search.
fn circles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            found.push(stack[at..].iter().map(|m| m.join("::")).collect());
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.clone());
        for next in g.get(node).into_iter().flatten() {
            visit(next, g, stack, done, found);
        }
        stack.pop();
        done.insert(node.clone());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in g.keys() {
        visit(node, g, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `src/` folders of every crate of the workspace.
fn crate_sources() -> Vec<PathBuf> {
    let mut dirs = vec![root().join("src")];
    if let Ok(entries) = std::fs::read_dir(root().join("crates")) {
        let mut crates: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        crates.sort();
        dirs.extend(crates);
    }
    dirs
}

#[test]
fn no_source_file_imports_one_that_imports_it_back() {
    let mut all = Vec::new();
    for src in crate_sources() {
        for circle in circles(&graph(&src)) {
            all.push(format!("{}: {}", src.display(), circle.join(" -> ")));
        }
    }
    assert!(all.is_empty(), "import circles:\n{}", all.join("\n"));
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut g = BTreeMap::new();
    let m = |s: &str| vec![s.to_string()];
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    g.insert(m("d"), BTreeSet::from([m("a")]));
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let text =
        "use super::{view::RecentWrites, mirrored::Mirrored};\nuse crate::ecs::sign::params;";
    let refs = references(
        &m("controller")
            .into_iter()
            .chain(m("cache"))
            .collect::<Vec<_>>(),
        text,
        false,
    );
    assert!(refs.contains(&vec![
        "controller".into(),
        "view".into(),
        "RecentWrites".into()
    ]));
    assert!(refs.contains(&vec!["ecs".into(), "sign".into(), "params".into()]));
}

#[test]
fn cargo_run_at_the_root_knows_which_binary_to_run() {
    // The README's first command, `cargo run --release -- demo`, names no binary, and the
    // workspace's default members build two (`ecs-sim` as well): without `default-run` cargo
    // refuses to choose.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let package = manifest
        .split("\n[")
        .find(|section| section.starts_with("[package]"))
        .expect("a [package] section");
    assert!(
        package
            .lines()
            .any(|l| l.trim() == r#"default-run = "imagepipeline-operator""#),
        "the root package must set default-run"
    );
}
