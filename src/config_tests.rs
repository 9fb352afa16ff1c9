use super::*;

#[test]
fn urls_choose_port_user_path_and_tls_mode() {
    let t = parse_url("ftp://alice@ftp.example.com/pub/data/").unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.user.as_str(), t.path.as_str()),
        ("ftp.example.com", 21, "alice", "/pub/data")
    );
    assert_eq!(t.tls, TlsMode::Auto);
    assert_eq!(parse_url("ftps://bob@h/").unwrap().tls, TlsMode::Explicit);
    assert_eq!(parse_url("ftps://bob@h:990/").unwrap().tls, TlsMode::Implicit);
    assert_eq!(parse_url("ftp://h:990").unwrap().tls, TlsMode::Implicit);
    let t = parse_url("ftp://h:2121").unwrap();
    assert_eq!((t.port, t.user.as_str(), t.path.as_str()), (2121, "anonymous", "/"));
    let t = parse_url("ftp://us%40er:p%3Ass@[::1]:21/a%20b").unwrap();
    assert_eq!(
        (t.user.as_str(), t.url_password.unwrap().expose(), t.host.as_str(), t.path.as_str()),
        ("us@er", "p:ss", "::1", "/a b")
    );
}

#[test]
fn bad_sources_say_what_is_wrong() {
    assert!(parse_url("http://h/").unwrap_err().0.contains("ftp://"));
    let err = resolve_source("nosuch", Options::default(), &ProfileFile::default()).unwrap_err();
    assert!(err.0.contains("neither a URL"), "{err}");
    assert!(redact("ftp://u:secret@h/").contains("***"));
    assert!(!redact("ftp://u:secret@h/").contains("secret"));
}

#[test]
fn profiles_hold_options_and_the_command_line_wins() {
    let file: ProfileFile = toml::from_str(
        r#"
        [connections.work]
        url = "ftps://alice@ftp.example.com:990/"
        max_connections = 8
        io_timeout = "45s"
        encoding = "cp1252"
        server_timezone = "+05:30"
        tls_allow_self_signed = true
        "#,
    )
    .unwrap();
    let cli = Options { max_connections: Some(3), ..Default::default() };
    let (target, o) = resolve_source("work", cli, &file).unwrap();
    assert_eq!(target.label.as_deref(), Some("work"));
    assert_eq!(target.tls, TlsMode::Implicit);
    assert_eq!(o.max_connections, Some(3));
    assert_eq!(o.io_timeout, Some(Duration::from_secs(45)));
    assert_eq!(o.encoding, Some(Charset::Cp1252));
    assert_eq!(o.server_timezone.map(|z| z.to_string()).as_deref(), Some("UTC+05:30"));
    assert!(o.tls_allow_self_signed);
    let bad: std::result::Result<ProfileFile, _> = toml::from_str("[connections.x]\nserver_timezone = \"IST\"\n");
    assert!(bad.unwrap_err().to_string().contains("+05:30"), "a bad zone says how to write one");
    let typo: std::result::Result<ProfileFile, _> = toml::from_str("[connections.x]\nmax_conections = 3\n");
    assert!(typo.is_err(), "unknown keys are refused");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("3 days").is_err());
}

#[test]
fn netrc_matches_machine_and_login() {
    let text = "machine a.example login alice password one\nmachine b.example login bob password two\ndefault login anonymous password x@y";
    assert_eq!(parse_netrc(text, "b.example", "bob").as_deref(), Some("two"));
    assert_eq!(parse_netrc(text, "a.example", "bob"), None);
    assert_eq!(parse_netrc(text, "c.example", "anonymous").as_deref(), Some("x@y"));
}

#[test]
fn certificate_options_without_tls_are_refused() {
    let o = Options { tls: Some(TlsChoice::Off), tls_allow_self_signed: true, ..Default::default() };
    assert!(resolve_source("ftp://h/", o, &ProfileFile::default()).is_err());
}
