//! `switchyard-http` sees the runtime through one facade only: every path of
//! `http/src` into `switchyard_runtime` goes through `switchyard_runtime::facade`
//! (read from the source text; comments and string literals do not count, and test
//! modules may build their fixtures from anything).

use std::path::Path;

use super::{drop_test_items, expand_use, is_ident, rust_files, tokens};

/// The crate the HTTP front reaches only through its facade.
const RUNTIME: &str = "switchyard_runtime";
/// The one module of [`RUNTIME`] the HTTP front names.
const FACADE: &str = "facade";

/// Each path into [`RUNTIME`] that the tokens name: `use` trees expanded (re-exports
/// too), other paths as far as they go, and a bare mention (`use .. as`,
/// `extern crate`) as the crate alone.
fn runtime_paths(t: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == "use" {
            let end = t[i..]
                .iter()
                .position(|x| x == ";")
                .map_or(t.len(), |p| i + p);
            let mut paths = Vec::new();
            expand_use(&t[i + 1..end], &mut 0, Vec::new(), &mut paths);
            out.extend(
                paths
                    .into_iter()
                    .filter(|p| p.first().is_some_and(|s| s == RUNTIME)),
            );
            i = end + 1;
            continue;
        }
        if t[i] == RUNTIME {
            let mut path = vec![t[i].clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|x| x == "::")
                && let Some(segment) = t.get(j + 1).filter(|s| is_ident(s))
            {
                path.push(segment.clone());
                j += 2;
            }
            out.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// The paths of one file's code (outside test modules) that reach into the runtime
/// other than through the facade, and how many go through it.
fn crossings(text: &str) -> (Vec<String>, usize) {
    let paths = runtime_paths(&drop_test_items(&tokens(text)));
    let through = paths
        .iter()
        .filter(|p| p.get(1).is_some_and(|s| s == FACADE))
        .count();
    let crossing = paths
        .iter()
        .filter(|p| p.get(1).is_none_or(|s| s != FACADE))
        .map(|p| p.join("::"))
        .collect();
    (crossing, through)
}

/// Every file of `http/src` names the runtime only as `switchyard_runtime::facade::..`.
#[test]
fn http_names_the_runtime_only_through_its_facade() {
    let root = crate::support::manifest_dir();
    let files = rust_files(&Path::new(&root).join("http/src"));
    let (mut found, mut through_facade) = (Vec::new(), 0);
    for (rel, text) in &files {
        let (crossing, through) = crossings(text);
        through_facade += through;
        found.extend(crossing.into_iter().map(|p| format!("http/src/{rel}: {p}")));
    }
    assert!(
        files.len() > 10 && through_facade + found.len() > 10,
        "the sources were read: {} files, {} paths into the runtime",
        files.len(),
        through_facade + found.len()
    );
    assert!(
        found.is_empty(),
        "http/src names the runtime other than through {RUNTIME}::{FACADE}:\n{}",
        found.join("\n")
    );
}

/// The facade check can fail: each way of naming the runtime around the facade is
/// caught, and what is no code (comments, strings, test modules) is not.
#[test]
fn facade_check_sees_a_crossing() {
    let caught = [
        (
            "use switchyard_runtime::store::Store;",
            "switchyard_runtime::store::Store",
        ),
        (
            "use switchyard_runtime::{facade::Gateway, bus::{Bus, Events}};",
            "switchyard_runtime::bus::Bus",
        ),
        (
            "pub use switchyard_runtime::store::Task;",
            "switchyard_runtime::store::Task",
        ),
        (
            "fn f() -> switchyard_runtime::bus::Bus { todo!() }",
            "switchyard_runtime::bus::Bus",
        ),
        (
            "fn f() { let _ = ::switchyard_runtime::secrets::random_alphanumeric(3); }",
            "switchyard_runtime::secrets::random_alphanumeric",
        ),
        ("use switchyard_runtime as rt;", "switchyard_runtime"),
        ("use switchyard_runtime::{self};", "switchyard_runtime"),
        ("use switchyard_runtime::*;", "switchyard_runtime::*"),
        ("extern crate switchyard_runtime;", "switchyard_runtime"),
    ];
    for (text, path) in caught {
        let (crossing, _) = crossings(text);
        assert!(crossing.iter().any(|p| p == path), "{text}: {crossing:?}");
    }
    let (crossing, through) = crossings(
        "use switchyard_runtime::facade::{Gateway, Secret};\n\
         use switchyard_runtime::facade as runtime;\n\
         fn f(g: &switchyard_runtime::facade::Gateway) {}\n\
         // use switchyard_runtime::store::Store;\n\
         /* switchyard_runtime::bus::Bus */\n\
         const S: &str = \"switchyard_runtime::store\";\n\
         #[cfg(test)]\nmod tests {\n    use switchyard_runtime::{MasterKey, store::Store};\n}\n",
    );
    assert_eq!((crossing, through), (Vec::<String>::new(), 4));
}
