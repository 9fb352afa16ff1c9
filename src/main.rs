//! The `ftpmount` command line: parsing only; the work happens in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ftpmount::config::Options;
use ftpmount::mount::{self, MountRequest};

#[derive(Parser)]
#[command(name = "ftpmount", version, about = "Mount an FTP or FTPS server as a local directory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount SOURCE at MOUNTPOINT; stays in the foreground until unmounted (fusermount3 -u,
    /// Ctrl-C or SIGTERM) unless --daemon is given
    Mount(MountArgs),
}

#[derive(Args)]
struct MountArgs {
    /// ftp://user@host[:port][/path], ftps://user@host[:port][/path] (port 990 = implicit TLS),
    /// or a connection label from the profile file
    source: String,
    /// An existing empty directory
    mountpoint: PathBuf,
    #[command(flatten)]
    options: Options,
    /// Profile file with connection labels [default: ~/.config/ftpmount/config.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Go to the background once the mount is ready
    #[arg(long)]
    daemon: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the log to this file instead of stderr
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Mount(a) => {
            if let Err(e) = ftpmount::logging::init(a.verbose, a.log_file.as_deref()) {
                eprintln!("ftpmount: {e}");
                return ExitCode::from(2);
            }
            mount::run(MountRequest {
                source: a.source,
                mountpoint: a.mountpoint,
                options: a.options,
                profile_path: a.config,
                daemon: a.daemon,
                log_to_file: a.log_file.is_some(),
            })
        }
    }
}
