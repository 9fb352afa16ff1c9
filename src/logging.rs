//! Log output: stderr or a file, level from `-v` (or `RUST_LOG`).
//!
//! suppaftp's own `log` records (which include the PASS command at trace level) are never
//! bridged into this output: no `tracing-log` layer is installed.

use std::path::Path;

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, log_file: Option<&Path>) -> Result<(), String> {
    init_at(level(verbose, "ftpmount=info"), log_file)
}

/// For commands whose output is the result: errors only, unless `-v`.
pub fn init_quiet(verbose: u8) -> Result<(), String> {
    init_at(level(verbose, "ftpmount=error"), None)
}

fn level(verbose: u8, default: &'static str) -> &'static str {
    match verbose {
        0 => default,
        1 => "ftpmount=debug",
        _ => "ftpmount=trace",
    }
}

fn init_at(level: &str, log_file: Option<&Path>) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("opening the log file {}: {e}", path.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).init();
        }
        // Colours only for a person at a terminal, not in journals and redirected logs.
        None => {
            use std::io::IsTerminal;
            builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}
