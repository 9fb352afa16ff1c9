//! The `ftpmount` command line: parsing only; the work happens in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use ftpmount::check::CheckRequest;
use ftpmount::collisions::CollisionsRequest;
use ftpmount::config::Options;
use ftpmount::helper::{self, HelperCall, KnownOption};
use ftpmount::mount::{self, MountRequest};
use ftpmount::status::StatusRequest;

/// The version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FTPMOUNT_COMMIT"), ")");

const MORE: &str = "\
Passwords come from --password-file, FTPMOUNT_PASSWORD, ~/.netrc, the profile's password_file,
or a prompt. Connection labels live in ~/.config/ftpmount/config.toml (or
/etc/ftpmount/config.toml). Unmount with fusermount3 -u MOUNTPOINT.

Documentation: /usr/share/doc/ftpmount (CONFIGURATION.md: every option, fstab and systemd;
SEMANTICS.md: what the mount does; TROUBLESHOOTING.md), or the project's docs/ directory.";

#[derive(Parser)]
#[command(name = "ftpmount", version = VERSION, about = "Mount an FTP or FTPS server as a local directory", after_long_help = MORE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount SOURCE at MOUNTPOINT; stays in the foreground until unmounted (fusermount3 -u,
    /// Ctrl-C or SIGTERM) unless --daemon is given
    Mount(MountArgs),
    /// List every group of names that differ only in case (MyFile.txt / myfile.txt) in a tree,
    /// on a server or local (a mountpoint or any directory); exit status 1 if there are any
    Collisions(CollisionsArgs),
    /// Try SOURCE stage by stage (DNS, TCP, TLS, certificate, login, features, data channel,
    /// case, session limit) and say which stage fails and what to do; exit status 0 when a
    /// mount would work
    Check(CheckArgs),
    /// Show running mounts (or the one at MOUNTPOINT): sessions, cache hits, transfers in
    /// flight, queued uploads and the last errors
    Status(StatusArgs),
    /// Wait until the uploads queued by a --write-back mount are on the server; exit status 1
    /// if some failed (each is printed, with where its data is kept)
    Sync(SyncArgs),
    /// Print a completion script for SHELL to standard output, e.g.
    /// `ftpmount completions bash > /etc/bash_completion.d/ftpmount`
    Completions(CompletionsArgs),
    /// Write the man pages (ftpmount.1 and one per subcommand) into DIR
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

#[derive(Args)]
struct CompletionsArgs {
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct ManpagesArgs {
    dir: PathBuf,
}

#[derive(Args)]
struct SyncArgs {
    /// The mountpoint
    mountpoint: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// A mountpoint [default: every mount of this user]
    mountpoint: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// ftp://user@host[:port][/path], ftps://… or a connection label, as for `mount`
    source: String,
    #[command(flatten)]
    options: Options,
    /// Also open sessions up to --max-connections and report where the server refuses more
    #[arg(long)]
    probe_limit: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    /// Profile file with connection labels [default: ~/.config/ftpmount/config.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log more while checking (-v debug, -vv trace), on stderr
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Args)]
struct CollisionsArgs {
    /// A local directory (for example a mountpoint), or a server: a URL or a connection label
    target: String,
    /// Where to start, relative to TARGET [default: its top]
    path: Option<String>,
    #[command(flatten)]
    options: Options,
    /// Profile file with connection labels [default: ~/.config/ftpmount/config.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Go to the background once the mount is ready (the log then goes to --log-file, by
    /// default a file `ftpmount status` names)
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
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let cli = match helper_call(&args) {
        None => Cli::parse_from(&args),
        Some(Ok(HelperCall::Mount(argv))) => Cli::parse_from(argv),
        Some(Ok(HelperCall::Fake)) => return ExitCode::SUCCESS,
        Some(Err(msg)) => {
            eprintln!("ftpmount: {msg}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Mount(mut a) => {
            // A mount in the background must not hold the caller's terminal or pipes: its log
            // goes to a file, by default next to its status socket.
            if a.daemon && a.log_file.is_none() {
                a.log_file = Some(ftpmount::status::default_log_file(&a.mountpoint));
            }
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
                log_file: a.log_file.as_ref().and_then(|p| std::path::absolute(p).ok()),
            })
        }
        Command::Check(a) => {
            // Only errors on stderr unless asked: the stages are the output.
            if let Err(e) = ftpmount::logging::init_quiet(a.verbose) {
                eprintln!("ftpmount: {e}");
                return ExitCode::from(2);
            }
            ftpmount::check::run(CheckRequest {
                source: a.source,
                options: a.options,
                profile_path: a.config,
                json: a.json,
                probe_limit: a.probe_limit,
            })
        }
        Command::Status(a) => ftpmount::status::run(StatusRequest { mountpoint: a.mountpoint, json: a.json }),
        Command::Sync(a) => ftpmount::status::sync(&a.mountpoint),
        Command::Completions(a) => {
            clap_complete::generate(a.shell, &mut Cli::command(), "ftpmount", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpages(a) => {
            match std::fs::create_dir_all(&a.dir).and_then(|()| clap_mangen::generate_to(Cli::command(), &a.dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ftpmount: writing man pages into {}: {e}", a.dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Collisions(a) => {
            if let Err(e) = ftpmount::logging::init(a.verbose, None) {
                eprintln!("ftpmount: {e}");
                return ExitCode::from(2);
            }
            ftpmount::collisions::run(CollisionsRequest {
                target: a.target,
                path: a.path,
                options: a.options,
                profile_path: a.config,
            })
        }
    }
}

/// Recognises a call as a mount helper (`mount.fuse.ftpmount SOURCE DIR -o …`, from fstab).
fn helper_call(args: &[String]) -> Option<Result<HelperCall, String>> {
    let cmd = Cli::command();
    let subcommands: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).chain(["help"]).collect();
    let mount = cmd.find_subcommand("mount").expect("the mount subcommand");
    let known: Vec<KnownOption> = mount
        .get_arguments()
        .filter_map(|a| {
            Some(KnownOption { long: a.get_long()?.to_string(), takes_value: a.get_action().takes_values() })
        })
        .collect();
    helper::translate(args, &known, &subcommands)
}
