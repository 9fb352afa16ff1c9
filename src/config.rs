//! Connection settings: options (from the command line and from named profiles, the seed's
//! "Connection Label"), URL parsing, passwords, and validation with clear errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::casefold::Folding;
use crate::fs::case::{CollisionPolicy, ServerCase};
use crate::names::Charset;
use crate::remote::ftp::{TlsMode, UtcOffset};
use crate::secret::Secret;

/// The seed's four SSL choices, as typed by a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsChoice {
    /// Use TLS if the server offers it, else continue unencrypted (with a warning).
    Auto,
    /// Require explicit TLS (AUTH TLS on the normal port, usually 21).
    Explicit,
    /// Require implicit TLS (TLS from the first byte, usually port 990).
    Implicit,
    /// Never use TLS (insecure: password and files travel in clear text).
    Off,
}

impl From<TlsChoice> for TlsMode {
    fn from(c: TlsChoice) -> Self {
        match c {
            TlsChoice::Auto => TlsMode::Auto,
            TlsChoice::Explicit => TlsMode::Explicit,
            TlsChoice::Implicit => TlsMode::Implicit,
            TlsChoice::Off => TlsMode::Off,
        }
    }
}

/// Every option a connection profile or the command line may set. Field names are the
/// option names (`max_connections` = `--max-connections`).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Profile only: the server URL (`ftps://user@host:port/path`).
    #[arg(skip)]
    pub url: Option<String>,

    /// TLS: auto = use if available, explicit = require (AUTH TLS), implicit = require (TLS
    /// from the first byte, port 990), off = never (insecure). Default: explicit for ftps://,
    /// implicit for port 990, auto for ftp://
    #[arg(long, value_enum, help_heading = "Connection")]
    pub tls: Option<TlsChoice>,
    /// Also trust the certificate authorities in this PEM file
    #[arg(long, value_name = "PEM", help_heading = "Connection")]
    pub ca_file: Option<PathBuf>,
    /// Accept a certificate issued for another host name (insecure)
    #[arg(long, help_heading = "Connection")]
    #[serde(default)]
    pub tls_allow_mismatched_host: bool,
    /// Accept a self-signed or unknown-issuer certificate (insecure)
    #[arg(long, help_heading = "Connection")]
    #[serde(default)]
    pub tls_allow_self_signed: bool,
    /// Trust exactly the certificate with this SHA-256 fingerprint (hex; colons optional)
    #[arg(long, value_name = "SHA256", help_heading = "Connection")]
    pub tls_fingerprint: Option<String>,
    /// Highest TLS version to offer: 1.2 or 1.3 (default 1.3; TLS 1.2 is always the minimum)
    #[arg(long, value_name = "VERSION", help_heading = "Connection")]
    pub tls_max_version: Option<String>,
    /// User name (overrides the one in the URL)
    #[arg(long, help_heading = "Connection")]
    pub user: Option<String>,
    /// Read the password from this file (first line). Also: FTPMOUNT_PASSWORD, ~/.netrc, prompt
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub password_file: Option<PathBuf>,
    /// Most FTP sessions open at once (default 25); lower it if the server limits sessions
    #[arg(long, value_name = "N", help_heading = "Connection")]
    pub max_connections: Option<usize>,
    /// Give up connecting after this long (default 10s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection")]
    #[serde(default, deserialize_with = "de_duration")]
    pub connect_timeout: Option<Duration>,
    /// Fail an operation when the server is silent this long (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection")]
    #[serde(default, deserialize_with = "de_duration")]
    pub io_timeout: Option<Duration>,
    /// How long operations keep reconnecting while the server cannot be reached (a restart, a
    /// network drop) before they fail (default: the --io-timeout)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection")]
    #[serde(default, deserialize_with = "de_duration")]
    pub reconnect_timeout: Option<Duration>,
    /// Charset of file names on the server: utf8 (default), latin1 or cp1252. Names that are
    /// not valid in it still work, byte for byte
    #[arg(long, value_name = "CHARSET", value_parser = parse_charset, help_heading = "Connection")]
    #[serde(default, deserialize_with = "de_charset")]
    pub encoding: Option<Charset>,
    /// The zone the server shows times in where they carry none (LIST; MDTM too on servers
    /// that answer it in local time), e.g. +05:30, -08:00, UTC. Default: found by comparing
    /// LIST with MDTM where the server has MDTM, else UTC. MLSD times are always UTC
    #[arg(long, value_name = "OFFSET", value_parser = parse_utc_offset, help_heading = "Connection")]
    #[serde(default, deserialize_with = "de_utc_offset")]
    pub server_timezone: Option<UtcOffset>,

    /// How long the kernel trusts file attributes (default 10s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_duration")]
    pub attr_timeout: Option<Duration>,
    /// How long a directory listing is reused before asking the server again (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_duration")]
    pub dir_timeout: Option<Duration>,
    /// How often a directory being looked at (open, or listed in the last 20 intervals) is
    /// listed again to show changes made on the server; a lookup of a name missing from a
    /// listing older than this lists again too. 0 = never (default 3s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_duration")]
    pub watch_interval: Option<Duration>,
    /// Directory for spool files, the content cache and the write-back queue [default:
    /// ~/.cache/ftpmount]
    #[arg(long, value_name = "DIR", help_heading = "Mount")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes all spool files may hold together, e.g. 10G, 500M (default 10G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_size")]
    pub cache_max_size: Option<u64>,
    /// Most bytes of file content kept under --cache-dir between opens and mounts, so files
    /// that have not changed on the server are not downloaded again, e.g. 10G; 0 turns the
    /// content cache off (default 4G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_size")]
    pub content_cache_size: Option<u64>,
    /// When a program reads the files of a directory one after another (cp -r, tar, grep -r,
    /// rsync from the mount), download up to this many of the next small files in the
    /// background into the content cache; 0 = off (default 32; needs the content cache)
    #[arg(long, value_name = "N", help_heading = "Mount")]
    pub prefetch_files: Option<usize>,
    /// Return from close() once the data is in the local spool and upload in the background,
    /// several files at once; fsync, `ftpmount sync` and unmount wait for the uploads, and
    /// uploads a crash interrupted resume at the next mount of the same source
    #[arg(long, help_heading = "Mount")]
    #[serde(default)]
    pub write_back: bool,
    /// Free space to report when the server tells none (most do not): e.g. 1T. By default
    /// none is reported, which `df` shows as 0 and GNOME/GLib file managers as unknown; KDE's
    /// Dolphin refuses to copy onto a filesystem that reports 0 free, so set this there
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Mount")]
    #[serde(default, deserialize_with = "de_size")]
    pub assume_free_space: Option<u64>,
    /// Mount read-only
    #[arg(long, help_heading = "Mount")]
    #[serde(default)]
    pub read_only: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)
    #[arg(long, help_heading = "Mount")]
    #[serde(default)]
    pub allow_other: bool,

    /// A new name that differs only in case from an existing one (MyFile.txt / myfile.txt):
    /// warn = log and go on, reject = refuse with "File exists", off = no check. Default:
    /// reject on a server that folds case, warn on others
    #[arg(long, value_enum, value_name = "POLICY", help_heading = "Case")]
    pub case_collisions: Option<CollisionPolicy>,
    /// Does the server treat MyFile.txt and myfile.txt as one file? auto = find out at mount
    /// (creates and deletes a temporary file), yes, no [default: auto]
    #[arg(long, value_enum, value_name = "WHEN", help_heading = "Case")]
    pub case_insensitive_server: Option<ServerCase>,
    /// Which names count as one: unicode (full case folding: Straße = STRASSE, é = e + accent)
    /// or ascii (A-Z = a-z only) [default: unicode]
    #[arg(long, value_enum, value_name = "FOLDING", help_heading = "Case")]
    pub case_folding: Option<Folding>,
}

impl Options {
    /// Command-line values win over the profile's.
    pub fn over(self, profile: Options) -> Options {
        Options {
            url: self.url.or(profile.url),
            tls: self.tls.or(profile.tls),
            ca_file: self.ca_file.or(profile.ca_file),
            tls_allow_mismatched_host: self.tls_allow_mismatched_host || profile.tls_allow_mismatched_host,
            tls_allow_self_signed: self.tls_allow_self_signed || profile.tls_allow_self_signed,
            tls_fingerprint: self.tls_fingerprint.or(profile.tls_fingerprint),
            tls_max_version: self.tls_max_version.or(profile.tls_max_version),
            user: self.user.or(profile.user),
            password_file: self.password_file.or(profile.password_file),
            max_connections: self.max_connections.or(profile.max_connections),
            connect_timeout: self.connect_timeout.or(profile.connect_timeout),
            io_timeout: self.io_timeout.or(profile.io_timeout),
            reconnect_timeout: self.reconnect_timeout.or(profile.reconnect_timeout),
            encoding: self.encoding.or(profile.encoding),
            server_timezone: self.server_timezone.or(profile.server_timezone),
            attr_timeout: self.attr_timeout.or(profile.attr_timeout),
            dir_timeout: self.dir_timeout.or(profile.dir_timeout),
            watch_interval: self.watch_interval.or(profile.watch_interval),
            cache_dir: self.cache_dir.or(profile.cache_dir),
            cache_max_size: self.cache_max_size.or(profile.cache_max_size),
            content_cache_size: self.content_cache_size.or(profile.content_cache_size),
            prefetch_files: self.prefetch_files.or(profile.prefetch_files),
            assume_free_space: self.assume_free_space.or(profile.assume_free_space),
            read_only: self.read_only || profile.read_only,
            write_back: self.write_back || profile.write_back,
            allow_other: self.allow_other || profile.allow_other,
            case_collisions: self.case_collisions.or(profile.case_collisions),
            case_insensitive_server: self.case_insensitive_server.or(profile.case_insensitive_server),
            case_folding: self.case_folding.or(profile.case_folding),
        }
    }
}

/// The profile file: one table per connection label.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default)]
    pub connections: BTreeMap<String, Options>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

type Result<T> = std::result::Result<T, ConfigError>;

/// The system-wide profile file, used when the user has none (mounts from fstab and systemd
/// often run without a home directory).
pub const SYSTEM_PROFILE_PATH: &str = "/etc/ftpmount/config.toml";

/// `~/.config/ftpmount/config.toml` (or `$XDG_CONFIG_HOME/ftpmount/config.toml`); if that does
/// not exist, `/etc/ftpmount/config.toml` when it does.
pub fn default_profile_path() -> Option<PathBuf> {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|base| base.join("ftpmount").join("config.toml"));
    let system = PathBuf::from(SYSTEM_PROFILE_PATH);
    match user {
        Some(u) if u.exists() || !system.exists() => Some(u),
        _ if system.exists() => Some(system),
        other => other,
    }
}

pub fn load_profiles(path: &Path) -> Result<ProfileFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProfileFile::default()),
        Err(e) => return Err(ConfigError(format!("reading the profile file {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| ConfigError(format!("the profile file {} is not valid: {e}", path.display())))
}

/// A server to connect to, fully resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: Option<String>,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The password written in the URL, if any (discouraged).
    pub url_password: Option<Secret>,
    pub path: String,
    pub tls: TlsMode,
}

/// Turns SOURCE (a URL or a label) plus options into a target and the effective options.
pub fn resolve_source(source: &str, cli: Options, profiles: &ProfileFile) -> Result<(Target, Options)> {
    let (label, options) = if source.contains("://") {
        (None, cli)
    } else {
        let profile = profiles.connections.get(source).ok_or_else(|| {
            let known: Vec<&str> = profiles.connections.keys().map(String::as_str).collect();
            ConfigError(format!(
                "'{source}' is neither a URL (ftp://user@host/, ftps://user@host/) nor a connection label in the \
                 profile file{}",
                if known.is_empty() {
                    " (it has no connections yet)".to_string()
                } else {
                    format!(" (labels: {})", known.join(", "))
                }
            ))
        })?;
        (Some(source.to_string()), cli.over(profile.clone()))
    };
    let url = match (&label, &options.url) {
        (None, _) => source.to_string(),
        (Some(_), Some(u)) => u.clone(),
        (Some(l), None) => {
            return Err(ConfigError(format!(
                "connection '{l}' in the profile file has no url = \"ftps://user@host/\""
            )));
        }
    };
    let mut target = parse_url(&url)?;
    target.label = label;
    if let Some(user) = &options.user {
        target.user = user.clone();
    }
    if let Some(choice) = options.tls {
        target.tls = choice.into();
    }
    validate(&target, &options)?;
    Ok((target, options))
}

/// Parses `ftp://user[:password]@host[:port][/path]` and `ftps://…`.
pub fn parse_url(s: &str) -> Result<Target> {
    let url = url::Url::parse(s).map_err(|e| ConfigError(format!("'{}' is not a valid URL: {e}", redact(s))))?;
    let scheme = url.scheme();
    if scheme != "ftp" && scheme != "ftps" {
        return Err(ConfigError(format!("unsupported scheme '{scheme}://': use ftp:// or ftps://")));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(ConfigError(format!("'{}' has no host name", redact(s)))),
    };
    let port = url.port().unwrap_or(21);
    let decode = |v: &str| percent_decode(v);
    let user = if url.username().is_empty() { "anonymous".to_string() } else { decode(url.username()) };
    let url_password = url.password().map(|p| Secret::new(decode(p)));
    let mut path = decode(url.path());
    if path.len() > 1 {
        path = path.trim_end_matches('/').to_string();
    }
    let tls = if port == 990 {
        TlsMode::Implicit
    } else if scheme == "ftps" {
        TlsMode::Explicit
    } else {
        TlsMode::Auto
    };
    Ok(Target { label: None, host, port, user, url_password, path, tls })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The URL with any password replaced, for error messages.
pub fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

fn validate(target: &Target, o: &Options) -> Result<()> {
    if o.max_connections == Some(0) {
        return Err(ConfigError("--max-connections must be at least 1".into()));
    }
    if let Some(v) = &o.tls_max_version {
        if v != "1.2" && v != "1.3" {
            return Err(ConfigError(format!("--tls-max-version must be 1.2 or 1.3, not '{v}'")));
        }
    }
    if target.tls == TlsMode::Off
        && (o.ca_file.is_some()
            || o.tls_fingerprint.is_some()
            || o.tls_allow_self_signed
            || o.tls_allow_mismatched_host)
    {
        return Err(ConfigError(
            "certificate options were given but TLS is off: drop --tls off (or use ftps://) to use them".into(),
        ));
    }
    Ok(())
}

/// Where the password comes from, first match wins: `--password-file`, `FTPMOUNT_PASSWORD`,
/// the URL (warned about), `~/.netrc`, a prompt on a terminal; anonymous users need none.
pub fn password(target: &Target, options: &Options, prompt: impl FnOnce(&str) -> Option<String>) -> Result<Secret> {
    if let Some(file) = &options.password_file {
        return read_password_file(file);
    }
    if let Ok(p) = std::env::var("FTPMOUNT_PASSWORD") {
        return Ok(Secret::new(p));
    }
    if let Some(p) = &target.url_password {
        tracing::warn!(
            "the password is written in the URL, where shell history and `ps` can show it; prefer \
             FTPMOUNT_PASSWORD, --password-file or ~/.netrc"
        );
        return Ok(p.clone());
    }
    if let Some(p) = netrc_password(&target.host, &target.user) {
        return Ok(p);
    }
    if target.user == "anonymous" || target.user == "ftp" {
        return Ok(Secret::new("anonymous@"));
    }
    let question = format!("Password for {}@{}: ", target.user, target.host);
    prompt(&question).map(Secret::new).ok_or_else(|| {
        ConfigError(format!(
            "no password for {}@{}: set FTPMOUNT_PASSWORD, pass --password-file FILE, add it to ~/.netrc, \
             or run on a terminal to be asked",
            target.user, target.host
        ))
    })
}

fn read_password_file(file: &Path) -> Result<Secret> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError(format!("reading the password file {}: {e}", file.display())))?;
    if let Ok(meta) = std::fs::metadata(file) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the password file {} can be read by other users; run: chmod 600 {}",
                file.display(),
                file.display()
            );
        }
    }
    Ok(Secret::new(text.lines().next().unwrap_or("").to_string()))
}

fn netrc_password(host: &str, user: &str) -> Option<Secret> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read_to_string(PathBuf::from(home).join(".netrc")).ok()?;
    parse_netrc(&text, host, user).map(Secret::new)
}

/// Finds the password for `host` and `user` in netrc text (`machine`, `login`, `password`,
/// `default`); a `default` entry applies when no machine matches.
pub fn parse_netrc(text: &str, host: &str, user: &str) -> Option<String> {
    let mut tokens = text.split_whitespace();
    let mut entries: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    while let Some(t) = tokens.next() {
        match t {
            "machine" => entries.push((tokens.next().map(str::to_string), None, None)),
            "default" => entries.push((None, None, None)),
            "login" => {
                if let Some(e) = entries.last_mut() {
                    e.1 = tokens.next().map(str::to_string);
                }
            }
            "password" => {
                if let Some(e) = entries.last_mut() {
                    e.2 = tokens.next().map(str::to_string);
                }
            }
            _ => {}
        }
    }
    let fits = |e: &(Option<String>, Option<String>, Option<String>)| e.1.as_deref().is_none_or(|l| l == user);
    entries
        .iter()
        .find(|e| e.0.as_deref() == Some(host) && fits(e))
        .or_else(|| entries.iter().find(|e| e.0.is_none() && fits(e)))
        .and_then(|e| e.2.clone())
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (examples: 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit '{other}' in '{s}' (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1048576`, `512K`, `500M`, `10G`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size (examples: 500M, 10G)"))
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bytes(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

fn parse_charset(s: &str) -> std::result::Result<Charset, String> {
    s.parse()
}

fn de_charset<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Charset>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
}

fn parse_utc_offset(s: &str) -> std::result::Result<UtcOffset, String> {
    s.parse()
}

fn de_utc_offset<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<UtcOffset>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(n)) => Ok(Some(Duration::from_secs(n))),
        Some(Raw::Text(t)) => parse_duration(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
