use super::*;

fn invalid(toml: &str) -> String {
    Settings::from_toml(toml)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn empty_file_gives_the_embedded_defaults() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.database.url, "sqlite://data/switchyard.db");
    assert_eq!(s.bus.url, "memory://");
    assert_eq!(s.bus.prefix, "switchyard");
    assert_eq!(s.http.listen, "127.0.0.1:8080");
    assert_eq!(s.artifacts.url, "file://data/artifacts");
    assert_eq!(s.secrets.master_key_file, PathBuf::from("data/master.key"));
    assert!(s.providers.is_empty());
}

#[test]
fn unknown_keys_fail_naming_the_key() {
    let message = invalid("[database]\nurll = \"sqlite://x.db\"\n");
    assert!(message.contains("urll"), "{message}");
    assert!(message.contains("database"), "{message}");
    let message = invalid("[databse]\nurl = \"sqlite://x.db\"\n");
    assert!(message.contains("databse"), "{message}");
}

#[test]
fn bad_values_fail_naming_the_key() {
    let message = invalid(
        "[database]\nurl = \"mysql://x\"\n[http]\nlisten = \"localhost\"\n[bus]\nprefix = \"a b\"\n",
    );
    assert!(
        message.contains("database.url must start with sqlite:"),
        "{message}"
    );
    assert!(
        message.contains("http.listen 'localhost' is not an address"),
        "{message}"
    );
    assert!(
        message.contains("bus.prefix 'a b' is not a valid subject prefix"),
        "{message}"
    );
    let message = invalid("[http]\nlisten = 8080\n");
    assert!(message.contains("listen"), "{message}");
}

#[test]
fn provider_seeds_are_validated_with_their_index() {
    let message = invalid(
        r#"
[[providers]]
name = "a"
provider = "mock"

[[providers]]
name = "a"
provider = "stabilty"
rate_limit = { rpm = 0 }
"#,
    );
    assert!(
        message.contains(
            "providers[1].provider unknown provider type 'stabilty' (did you mean 'stability'?)"
        ),
        "{message}"
    );
    assert!(
        message.contains("providers[1].rate_limit.rpm must be > 0"),
        "{message}"
    );
    assert!(
        message.contains("providers[1].name 'a' is used by an earlier entry"),
        "{message}"
    );
}

#[test]
fn master_key_setting_is_checked_and_never_printed() {
    let message = invalid("[secrets]\nmaster_key = \"c2hvcnQ=\"\n");
    assert!(
        message.contains("secrets.master_key master key must be base64 of 32 bytes"),
        "{message}"
    );
    let s = Settings::from_toml(
        "[secrets]\nmaster_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n",
    )
    .unwrap();
    assert!(!format!("{s:?}").contains("MDEyMzQ1"));
}

#[test]
fn connection_bounds_have_defaults_and_refuse_zero() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.http.header_read_timeout_ms, 10_000);
    assert_eq!(s.http.idle_timeout_ms, 60_000);
    assert_eq!(s.http.max_connections, 10_000);
    assert_eq!(s.http.max_connections_per_ip, 256);
    let message = invalid(
        "[http]\nheader_read_timeout_ms = 0\nidle_timeout_ms = 0\nmax_connections = 0\nmax_connections_per_ip = 0\n",
    );
    for key in [
        "http.header_read_timeout_ms",
        "http.idle_timeout_ms",
        "http.max_connections",
        "http.max_connections_per_ip",
    ] {
        assert!(message.contains(&format!("{key} must be > 0")), "{message}");
    }
    let s =
        Settings::from_toml("[http]\nmax_connections_per_ip = 4\nidle_timeout_ms = 300\n").unwrap();
    assert_eq!(
        (s.http.max_connections_per_ip, s.http.idle_timeout_ms),
        (4, 300)
    );
}

#[test]
fn the_shipped_config_files_are_valid_settings() {
    for (name, text) in [
        (
            "switchyard.toml",
            include_str!("../../../config/switchyard.toml"),
        ),
        (
            "switchyard.example.toml",
            include_str!("../../../config/switchyard.example.toml"),
        ),
    ] {
        let s = Settings::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.http.max_connections_per_ip, 256, "{name}");
    }
}
