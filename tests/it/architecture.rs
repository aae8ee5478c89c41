//! The architecture holds by test, not by habit:
//! - `switchyard-core` does no I/O and pulls in no runtime;
//! - the files of one crate import each other without cycles (read from the source text);
//! - the heavy infrastructure crates (`sqlx`, `axum`, `async-nats`, `wasmtime`) stay in
//!   the one workspace crate that owns each of them, and NATS stays in the files that own
//!   the bus;
//! - `switchyard-http` names the runtime only through `switchyard_runtime::facade`
//!   (`http_facade`).

mod http_facade;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The standard output of `cargo <args>` (split at spaces), run in the workspace.
fn cargo(args: &str) -> String {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args.split(' '))
        .current_dir(crate::support::manifest_dir())
        .output()
        .unwrap_or_else(|e| panic!("cargo {args} runs: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo {args}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// `switchyard-core` depends, even transitively, on no runtime, network, database or
/// WebAssembly crate.
#[test]
fn core_depends_on_no_io_crates() {
    let tree = cargo("tree -p switchyard-core -e normal --prefix none --format {p}");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"serde"), "the tree was read: {crates:?}");
    for banned in "tokio sqlx reqwest async-nats axum ractor wasmtime hyper mio".split(' ') {
        assert!(
            !crates.contains(&banned),
            "switchyard-core depends on {banned}"
        );
    }
}

/// The code of a Rust file as tokens: identifiers and keywords, `::`, and single
/// punctuation characters. Comments are dropped; string and char literals become `""`.
fn tokens(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    // The index just past the first `end` at or after `from` (or the end of the text).
    let past = |from: usize, end: &str| {
        let end: Vec<char> = end.chars().collect();
        (from..c.len())
            .find(|&j| c[j..].starts_with(&end))
            .map_or(c.len(), |j| j + end.len())
    };
    let (mut out, mut i) = (Vec::new(), 0);
    while i < c.len() {
        let word_len = c[i..]
            .iter()
            .take_while(|x| x.is_alphanumeric() || **x == '_')
            .count();
        let word: String = c[i..i + word_len].iter().collect();
        let hashes = c[i + word_len..].iter().take_while(|&&h| h == '#').count();
        match (c[i], at(i + 1)) {
            (ch, _) if ch.is_whitespace() => i += 1,
            ('/', '/') => i = past(i, "\n"),
            ('/', '*') => i = past(i + 2, "*/"),
            ('"', _) => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push("\"\"".to_owned());
            }
            ('\'', next) if next == '\\' || at(i + 2) == '\'' => {
                i = if next == '\\' {
                    past(i + 3, "'")
                } else {
                    i + 3
                };
                out.push("\"\"".to_owned());
            }
            _ if matches!(word.as_str(), "r" | "br" | "cr") && at(i + word_len + hashes) == '"' => {
                // A raw string: up to `"` followed by as many `#` as it opened with.
                let close = format!("\"{}", "#".repeat(hashes));
                i = past(i + word_len + hashes + 1, &close);
                out.push("\"\"".to_owned());
            }
            _ if word_len > 0 => {
                i += word_len;
                out.push(word);
            }
            (':', ':') => {
                i += 2;
                out.push("::".to_owned());
            }
            (ch, _) => {
                i += 1; // punctuation, or the `'` of a lifetime
                out.push(ch.to_string());
            }
        }
    }
    out
}

fn is_ident(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// The tokens without the items marked `#[cfg(test)]` (`mod tests { .. }`, test-only
/// `use` lines): test code may import what it likes.
fn drop_test_items(t: &[String]) -> Vec<String> {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if !t[i..].iter().take(7).map(String::as_str).eq(CFG_TEST) {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += CFG_TEST.len();
        // The item: up to a `;` or a `}` at its own level (after any further attributes).
        let mut depth = 0usize;
        while let Some(token) = t.get(i) {
            i += 1;
            match token.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                "}" if depth <= 1 => break,
                "}" => depth -= 1,
                ";" if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// One path a file names (`crate::`, `super::`, `self::`, `child::`..) as written, and how
/// many inline `mod x { .. }` blocks enclose it (each one moves `super` one module down).
#[derive(Debug)]
struct Import {
    path: Vec<String>,
    inline_depth: usize,
}

/// The paths in `use` statements (expanded) that start at `crate`, `super` or `self`, or
/// (outside inline modules) at a child module the file declares (`mod x;` .. `use x::..`),
/// and inline `crate::a::b` paths. `pub use` and `pub(..) use` re-exports are a module's
/// facade, not its dependencies, and are skipped; so are the `mod x;` lines themselves.
fn imports(t: &[String]) -> Vec<Import> {
    let mut out = Vec::new();
    let mut children = BTreeSet::new(); // the `mod x;` at the file's own level
    let mut braces: Vec<bool> = Vec::new(); // true: the brace opens an inline module
    let mut module_brace_next = false;
    let mut i = 0;
    while i < t.len() {
        let token = t[i].as_str();
        let inline_depth = braces.iter().filter(|&&m| m).count();
        match token {
            "mod" if t.get(i + 2).is_some_and(|b| b == "{") => module_brace_next = true,
            "mod" if inline_depth == 0 && t.get(i + 2).is_some_and(|b| b == ";") => {
                children.insert(t[i + 1].clone());
            }
            "{" => braces.push(std::mem::take(&mut module_brace_next)),
            "}" => {
                braces.pop();
            }
            "use" => {
                let end = t[i..]
                    .iter()
                    .position(|x| x == ";")
                    .map_or(t.len(), |p| i + p);
                // `pub use`, `pub(crate) use`: a `)` before `use` only ends a visibility.
                if t[..i].last().is_none_or(|x| x != "pub" && x != ")") {
                    let mut paths = Vec::new();
                    expand_use(&t[i + 1..end], &mut 0, Vec::new(), &mut paths);
                    out.extend(
                        paths
                            .into_iter()
                            .filter(|p| !p.is_empty())
                            .map(|path| Import { path, inline_depth }),
                    );
                }
                i = end + 1;
                continue;
            }
            "crate"
                if t.get(i + 1).is_some_and(|x| x == "::")
                    && !(i > 0 && matches!(t[i - 1].as_str(), "$" | "in" | "::")) =>
            {
                let mut path = vec!["crate".to_owned()];
                let mut j = i + 1;
                while t.get(j).is_some_and(|x| x == "::")
                    && let Some(segment) = t.get(j + 1).filter(|s| is_ident(s))
                {
                    path.push(segment.clone());
                    j += 2;
                }
                out.push(Import { path, inline_depth });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    // A bare first segment is a dependency only when it names a declared child module.
    out.retain(|import| match import.path[0].as_str() {
        "crate" | "super" | "self" => true,
        child => import.inline_depth == 0 && children.contains(child),
    });
    out
}

/// Expands a `use` tree (`a::{b, c::{self, D as E}, *}`) into its paths.
fn expand_use(t: &[String], i: &mut usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
    while let Some(token) = t.get(*i) {
        match token.as_str() {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                while t.get(*i).is_some_and(|x| x != "}") {
                    let before = *i;
                    expand_use(t, i, path.clone(), out);
                    if t.get(*i).is_some_and(|x| x == ",") || *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                path.push("*".to_owned());
                break;
            }
            word if is_ident(word) => {
                *i += 1;
                if word != "self" || path.is_empty() {
                    path.push(word.to_owned());
                }
                if t.get(*i).is_some_and(|x| x == "as") {
                    *i += 2;
                }
                if t.get(*i).is_none_or(|x| x != "::") {
                    break;
                }
            }
            _ => break,
        }
    }
    out.push(path);
}

/// Importing file -> imported file -> the paths that tie them (files relative to the
/// crate's source directory).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The module a file defines (`lib.rs`/`main.rs` is the root, `a/b.rs` is `a::b`), or
/// `None` for test files (`tests.rs`, anything under `tests/`).
fn module_path(rel: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .strip_suffix(".rs")?
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.iter().any(|p| p == "tests") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    Some(parts)
}

/// The file that defines what `import` names: the longest prefix of its absolute path
/// that is a module file. `None` for the crate root, and for the importing file itself.
fn resolve(
    file: &str,
    module: &[String],
    import: &Import,
    modules: &BTreeMap<Vec<String>, String>,
) -> Option<String> {
    let path = &import.path;
    let absolute: Vec<String> = match path[0].as_str() {
        "crate" => path[1..].to_vec(),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            let up = supers
                .checked_sub(import.inline_depth)
                .filter(|&up| up > 0)?;
            let base = module.get(..module.len().checked_sub(up)?)?;
            base.iter().chain(&path[supers..]).cloned().collect()
        }
        // `self::..` or a child's name: below the file's module (in an inline module, the
        // items are the file's own).
        _ if import.inline_depth > 0 => return None,
        first => {
            let skip = usize::from(first == "self");
            module.iter().chain(&path[skip..]).cloned().collect()
        }
    };
    (1..=absolute.len())
        .rev()
        .find_map(|n| modules.get(&absolute[..n]))
        .filter(|target| target.as_str() != file)
        .cloned()
}

/// The import graph of one crate's files, given as (path relative to the source
/// directory, text).
fn file_graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|(rel, _)| Some((module_path(rel)?, rel.clone())))
        .collect();
    let mut graph = Graph::new();
    for (rel, text) in files {
        let Some(module) = module_path(rel) else {
            continue;
        };
        let edges = graph.entry(rel.clone()).or_default();
        for import in imports(&drop_test_items(&tokens(text))) {
            if let Some(target) = resolve(rel, &module, &import, &modules) {
                edges
                    .entry(target)
                    .or_default()
                    .insert(import.path.join("::"));
            }
        }
    }
    graph
}

/// The strongly connected components of more than one file, each sorted: two files are
/// in one when each reaches the other (iterative DFS from every file).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reachable = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(file) = stack.pop() {
            for next in graph.get(file).into_iter().flat_map(BTreeMap::keys) {
                if seen.insert(next.clone()) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|f| (f, reachable(f))).collect();
    // No file imports itself, so a file reaches itself only through a cycle.
    let mut components: Vec<Vec<String>> = Vec::new();
    for (file, from_file) in &reach {
        let component: Vec<String> = from_file
            .iter()
            .filter(|other| reach[other].contains(*file))
            .cloned()
            .collect();
        if !component.is_empty() && !components.contains(&component) {
            components.push(component);
        }
    }
    components
}

/// Every edge inside a cycle, as `file -> file: names`.
fn describe(dir: &str, graph: &Graph, component: &[String]) -> String {
    let mut lines = vec![format!("cycle in {dir}: {}", component.join(", "))];
    for from in component {
        for (to, names) in graph.get(from).into_iter().flatten() {
            if component.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                lines.push(format!(
                    "  {dir}/{from} -> {dir}/{to}: {}",
                    names.join(", ")
                ));
            }
        }
    }
    lines.join("\n")
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, text), sorted.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    assert!(dir.is_dir(), "source directory {dir:?} is missing");
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The source directories of the workspace's crates (one crate root each).
const SOURCE_DIRS: &str = "core/src tasks/src store/src providers/src runtime/src \
                           http/src server/src plugins/src plugins/componentize/src src bench";

/// No two files of one crate import each other, directly or through others: a crate's
/// files form layers, and the crate root (`lib.rs`) is only the facade.
#[test]
fn no_import_cycle_between_files_of_one_crate() {
    let root = crate::support::manifest_dir();
    let mut found = Vec::new();
    let (mut files_read, mut edges) = (0, 0);
    for dir in SOURCE_DIRS.split_whitespace() {
        let files = rust_files(&Path::new(&root).join(dir));
        files_read += files.len();
        let graph = file_graph(&files);
        edges += graph.values().map(BTreeMap::len).sum::<usize>();
        found.extend(cycles(&graph).iter().map(|c| describe(dir, &graph, c)));
    }
    assert!(
        files_read > 50 && edges > 20,
        "the sources were read: {files_read} files, {edges} imports"
    );
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n")
    );
}

/// The cycle check can fail: a synthetic crate with a known cycle is caught, and the
/// things that are not dependencies (re-exports, comments, strings, test modules) are not.
#[test]
fn cycle_finder_sees_a_cycle() {
    let crate_files = |b: &str| -> Vec<(String, String)> {
        [
            ("lib.rs", "mod a; mod b; mod c; mod d; pub use a::A;"),
            ("a.rs", "use crate::b::{Bee, nested::{self as n}};\npub struct A;"),
            ("b.rs", b),
            (
                "c.rs",
                "use crate::a::A;\n// use crate::d::D;\nconst S: &str = \"crate::d::D\";\n\
                 pub(crate) use crate::d::D;\n#[cfg(test)]\nmod tests {\n    use crate::d::D;\n}\n",
            ),
            ("d.rs", "mod e;\npub use e::E;\npub use crate::c::C;\npub struct D;"),
            ("d/e.rs", "use super::super::c::C;\nuse super::D;\nmod inner { use super::E; }\npub struct E;"),
            ("d/tests.rs", "use crate::d::e::E;"),
        ]
        .into_iter()
        .map(|(rel, text)| (rel.to_owned(), text.to_owned()))
        .collect()
    };
    let keys = |graph: &Graph, file: &str| -> Vec<String> { graph[file].keys().cloned().collect() };

    let cyclic = file_graph(&crate_files(
        "pub struct Bee;\npub fn a() -> crate::a::A { crate::a::A }",
    ));
    assert_eq!(
        cycles(&cyclic),
        vec![vec!["a.rs".to_owned(), "b.rs".to_owned()]]
    );
    assert!(
        cyclic["a.rs"]["b.rs"].contains("crate::b::Bee"),
        "{cyclic:?}"
    );
    assert!(cyclic["b.rs"]["a.rs"].contains("crate::a::A"), "{cyclic:?}");
    assert_eq!(keys(&cyclic, "c.rs"), ["a.rs"]);
    assert_eq!(keys(&cyclic, "d.rs"), Vec::<String>::new());
    assert_eq!(keys(&cyclic, "d/e.rs"), ["c.rs", "d.rs"]);
    assert!(!cyclic.contains_key("d/tests.rs"));
    let report = describe("x/src", &cyclic, &cycles(&cyclic)[0]);
    assert!(
        report.contains("x/src/b.rs -> x/src/a.rs: crate::a::A"),
        "{report}"
    );

    let none = Vec::<Vec<String>>::new();
    assert_eq!(cycles(&file_graph(&crate_files("pub struct Bee;"))), none);

    // A parent that names its child module by a bare or `self::` path, and the child
    // importing from the parent.
    let nested = |parent_use: &str| {
        let files = [
            ("lib.rs", "mod a;".to_owned()),
            ("a.rs", format!("mod b;\n{parent_use}\npub struct T;")),
            ("a/b.rs", "use super::T;\npub fn f() {}".to_owned()),
        ];
        file_graph(&files.map(|(rel, text)| (rel.to_owned(), text)))
    };
    let a_b = vec![vec!["a.rs".to_owned(), "a/b.rs".to_owned()]];
    for (parent_use, name) in [("use b::f;", "b::f"), ("use self::b::{f};", "self::b::f")] {
        let graph = nested(parent_use);
        assert_eq!(cycles(&graph), a_b, "{parent_use}");
        assert!(graph["a.rs"]["a/b.rs"].contains(name), "{graph:?}");
    }
    for text in "pub use b::f;|pub(crate) use b::f;|use std::b;|// use b::f;".split('|') {
        assert_eq!(cycles(&nested(text)), none, "{text}");
    }
}

/// Each workspace package's direct dependencies by kind (`normal`, `dev`, `build`), from
/// `cargo metadata`.
fn workspace_dependencies() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let metadata = cargo("metadata --format-version 1 --no-deps");
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let kinds: &mut BTreeMap<String, BTreeSet<String>> = packages
            .entry(package["name"].as_str().unwrap().to_owned())
            .or_default();
        for dependency in package["dependencies"].as_array().unwrap() {
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            kinds
                .entry(kind.to_owned())
                .or_default()
                .insert(dependency["name"].as_str().unwrap().to_owned());
        }
    }
    packages
}

/// `sqlx` is only the store's, `axum` only the HTTP front's, `async-nats` only the
/// runtime's (in the bus, control and replica files) and the JetStream bench's, and
/// `wasmtime` only the plugin host's (normal dependencies; tests may use anything).
#[test]
fn crate_boundaries_hold() {
    let packages = workspace_dependencies();
    assert!(
        ["switchyard", "switchyard-store", "switchyard-http"].map(|p| packages.contains_key(p))
            == [true; 3],
        "cargo metadata was read: {packages:?}"
    );
    let owners: [(&str, &[&str]); 4] = [
        ("sqlx", &["switchyard-store"]),
        ("axum", &["switchyard-http"]),
        ("async-nats", &["switchyard-runtime", "switchyard"]),
        ("wasmtime", &["switchyard-plugins"]),
    ];
    let mut failures = Vec::new();
    for (package, kinds) in &packages {
        let normal = kinds.get("normal").cloned().unwrap_or_default();
        for (dependency, allowed) in owners {
            if normal.contains(dependency) && !allowed.contains(&package.as_str()) {
                failures.push(format!(
                    "{package} has a normal dependency on {dependency}; only {allowed:?} may"
                ));
            }
        }
    }

    // Within the packages that may use NATS, the files that do (in code, not comments).
    let nats_files: [(&str, &[&str], &[&str]); 2] = [
        (
            "switchyard-runtime",
            &["runtime/src"],
            // The bus's NATS module (bus/nats.rs, bus/nats/) and the control service.
            &["runtime/src/bus/nats", "runtime/src/control.rs"],
        ),
        ("switchyard", &["src", "bench"], &["bench/over_nats.rs"]),
    ];
    let root = crate::support::manifest_dir();
    for (package, dirs, allowed) in nats_files {
        let mut using = Vec::new();
        for dir in dirs {
            for (rel, text) in rust_files(&Path::new(&root).join(dir)) {
                if tokens(&text).iter().any(|t| t == "async_nats") {
                    using.push(format!("{dir}/{rel}"));
                }
            }
        }
        println!("{package}: files that name async_nats: {using:?}");
        for file in using {
            if !allowed.iter().any(|a| file.starts_with(a)) {
                failures.push(format!(
                    "{package}: {file} names async_nats (the async-nats dependency); only {allowed:?} may"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "crate boundaries crossed:\n{}",
        failures.join("\n")
    );
}
