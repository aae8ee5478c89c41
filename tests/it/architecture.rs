//! Dependencies point one way: `switchyard-core` does no I/O and pulls in no runtime.

use std::process::Command;

#[test]
fn core_depends_on_no_io_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "switchyard-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(crate::support::manifest_dir())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"serde"), "the tree was read: {crates:?}");
    for banned in [
        "tokio",
        "sqlx",
        "reqwest",
        "async-nats",
        "axum",
        "ractor",
        "wasmtime",
        "hyper",
        "mio",
    ] {
        assert!(
            !crates.contains(&banned),
            "switchyard-core depends on {banned}"
        );
    }
}
