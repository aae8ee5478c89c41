//! The process's log output, the same for the product binary and the load tool.

/// Logs to stderr, filtered by `RUST_LOG` (default `info,sqlx=warn`), styled only when
/// stderr is a terminal. Styling is not free: the fmt layer renders every span's fields
/// when the span opens, and with ANSI styling on that rendering cost the load tool
/// ~13 % more instructions per in-process request (docs/benchmarks.md, session 7).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
