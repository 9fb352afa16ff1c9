//! Running as a mount helper: `mount /mnt/x` with an fstab line of type `fuse.ftpmount` runs
//! `mount.fuse.ftpmount SOURCE MOUNTPOINT -o OPTIONS` (or, through fuse3's `mount.fuse`,
//! `ftpmount SOURCE MOUNTPOINT -o OPTIONS`). This turns such a call into the equivalent
//! `ftpmount mount SOURCE MOUNTPOINT --daemon --option value …`.

/// A long option of `ftpmount mount`, as clap knows it.
pub struct KnownOption {
    pub long: String,
    pub takes_value: bool,
}

/// What a helper-style command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum HelperCall {
    /// The equivalent `ftpmount mount …` arguments (argv[0] included).
    Mount(Vec<String>),
    /// `mount -f` (fake): do nothing, successfully.
    Fake,
}

/// Generic mount options that mean nothing to ftpmount (mount(8), systemd and fstab use them).
const IGNORED: &[&str] = &[
    "defaults",
    "rw",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "sync",
    "async",
    "dirsync",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
];

/// `None` when `args` is an ordinary `ftpmount` command line.
pub fn translate(args: &[String], known: &[KnownOption], subcommands: &[&str]) -> Option<Result<HelperCall, String>> {
    let argv0 = args.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("ftpmount");
    let by_name = argv0.starts_with("mount.");
    let by_shape = args.len() >= 3
        && !args[1].starts_with('-')
        && !subcommands.contains(&args[1].as_str())
        && args.iter().any(|a| a == "-o");
    if !by_name && !by_shape {
        return None;
    }
    Some(parse(&args[1..], known))
}

fn parse(args: &[String], known: &[KnownOption]) -> Result<HelperCall, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => options.extend(it.next().ok_or("-o needs a list of options")?.split(',').map(str::to_string)),
            "-t" => {
                it.next();
            }
            "-f" => return Ok(HelperCall::Fake),
            "-v" => verbose = true,
            // -n (no mtab), -s (sloppy), -r (read-only is also given as -o ro)
            "-n" | "-s" => {}
            "-r" => options.push("ro".into()),
            s if s.starts_with('-') => return Err(format!("unknown mount helper flag '{s}'")),
            _ => positional.push(a.clone()),
        }
    }
    let [source, mountpoint] = positional.as_slice() else {
        return Err(format!("a mount helper needs SOURCE and MOUNTPOINT, got {positional:?}"));
    };
    let mut out = vec!["ftpmount".to_string(), "mount".into(), source.clone(), mountpoint.clone()];
    let mut daemon = true;
    for opt in options.iter().filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match key {
            k if IGNORED.contains(&k) || k.starts_with("x-") || k == "comment" => {}
            "ro" => out.push("--read-only".into()),
            "foreground" => daemon = false,
            _ => {
                let long = key.replace('_', "-");
                let Some(o) = known.iter().find(|o| o.long == long) else {
                    return Err(format!(
                        "unknown mount option '{key}' (options are ftpmount's long options with _ or -, e.g. \
                         max_connections=8; see docs/CONFIGURATION.md)"
                    ));
                };
                match (o.takes_value, value) {
                    (true, Some(v)) => out.extend([format!("--{long}"), v.to_string()]),
                    (true, None) => return Err(format!("mount option '{key}' needs a value: {key}=…")),
                    (false, None) => out.push(format!("--{long}")),
                    (false, Some(_)) => return Err(format!("mount option '{key}' takes no value")),
                }
            }
        }
    }
    if daemon {
        out.push("--daemon".into());
    }
    if verbose {
        out.push("-v".into());
    }
    Ok(HelperCall::Mount(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<KnownOption> {
        [("max-connections", true), ("tls", true), ("allow-other", false), ("read-only", false), ("log-file", true)]
            .into_iter()
            .map(|(l, v)| KnownOption { long: l.into(), takes_value: v })
            .collect()
    }

    fn call(args: &[&str]) -> Option<Result<HelperCall, String>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        translate(&args, &known(), &["mount", "check", "status", "collisions"])
    }

    #[test]
    fn fstab_options_become_command_line_options() {
        let got = call(&[
            "/sbin/mount.fuse.ftpmount",
            "work",
            "/mnt/x",
            "-o",
            "rw,_netdev,max_connections=8,allow_other,x-systemd.automount",
        ]);
        let want = ["ftpmount", "mount", "work", "/mnt/x", "--max-connections", "8", "--allow-other", "--daemon"];
        assert_eq!(got, Some(Ok(HelperCall::Mount(want.iter().map(|s| s.to_string()).collect()))));
    }

    #[test]
    fn fuse3s_mount_fuse_style_is_recognised_by_shape() {
        let got = call(&["ftpmount", "ftps://a@h/", "/mnt/x", "-o", "ro,tls=implicit,foreground"]).unwrap().unwrap();
        let want = ["ftpmount", "mount", "ftps://a@h/", "/mnt/x", "--read-only", "--tls", "implicit"];
        assert_eq!(got, HelperCall::Mount(want.iter().map(|s| s.to_string()).collect()));
    }

    #[test]
    fn ordinary_command_lines_are_left_alone() {
        assert_eq!(call(&["ftpmount", "mount", "work", "/mnt/x", "--read-only"]), None);
        assert_eq!(call(&["ftpmount", "status"]), None);
        assert_eq!(call(&["ftpmount", "--help"]), None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = call(&["mount.ftpmount", "work", "/mnt/x", "-o", "max_conections=8"]).unwrap().unwrap_err();
        assert!(err.contains("unknown mount option 'max_conections'"), "{err}");
        let err = call(&["mount.ftpmount", "work", "/mnt/x", "-o", "tls"]).unwrap().unwrap_err();
        assert!(err.contains("needs a value"), "{err}");
        let err = call(&["mount.ftpmount", "work"]).unwrap().unwrap_err();
        assert!(err.contains("SOURCE and MOUNTPOINT"), "{err}");
        assert_eq!(call(&["mount.ftpmount", "work", "/mnt/x", "-f"]), Some(Ok(HelperCall::Fake)));
    }
}
