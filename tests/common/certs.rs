//! Test certificates, made with the openssl command line: a CA, server certificates it
//! signed (right host, wrong host, expired, not yet valid), and a self-signed one.

use std::fs;
use std::path::PathBuf;

use super::{TempDir, sh};

/// Certificates made with the openssl command line: a CA, server certificates it signed, and
/// a self-signed one.
pub struct Certs {
    dir: TempDir,
}

pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        let certs = Certs { dir: TempDir::new("certs") };
        certs.self_signed("ca", "ftpmount test CA", &[]);
        certs.signed("server", "DNS:localhost,IP:127.0.0.1");
        certs.signed("wrong-host", "DNS:ftp.example.invalid");
        certs.signed_for_dates("expired", "20200101000000Z", "20200201000000Z");
        certs.signed_for_dates("not-yet-valid", "20400101000000Z", "20410101000000Z");
        certs.self_signed("self-signed", "localhost", &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
        certs
    }

    /// A new key `NAME.key` and a self-signed certificate `NAME.pem` for the Common Name `cn`,
    /// with `extra` arguments to `openssl req`.
    fn self_signed(&self, name: &str, cn: &str, extra: &[&str]) {
        let d = self.dir.path();
        let p = |n: String| d.join(n).to_str().unwrap().to_string();
        let subject = format!("/CN={cn}");
        let (key, pem) = (p(format!("{name}.key")), p(format!("{name}.pem")));
        let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", &subject];
        args.extend(extra);
        args.extend(["-keyout", &key, "-out", &pem]);
        sh("openssl", &args);
    }

    fn signed(&self, name: &str, san: &str) {
        let cn = san.split(',').next().unwrap().trim_start_matches("DNS:");
        self.request(name, cn);
        fs::write(
            self.dir.path().join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        self.sign_with_ca(name);
    }

    /// A new key `NAME.key` and a request `NAME.csr` for the Common Name `cn`.
    fn request(&self, name: &str, cn: &str) {
        let d = self.dir.path();
        let p = |n: String| d.join(n).to_str().unwrap().to_string();
        sh(
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &p(format!("{name}.key")),
                "-out",
                &p(format!("{name}.csr")),
            ],
        );
    }

    /// `NAME.pem`: the request `NAME.csr` signed by the test CA with the extensions in `NAME.ext`.
    fn sign_with_ca(&self, name: &str) {
        let d = self.dir.path();
        let p = |n: String| d.join(n).to_str().unwrap().to_string();
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &p(format!("{name}.csr")),
                "-CA",
                &p("ca.pem".into()),
                "-CAkey",
                &p("ca.key".into()),
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                &p(format!("{name}.ext")),
                "-out",
                &p(format!("{name}.pem")),
            ],
        );
    }

    /// A certificate for localhost valid only between two dates (`YYYYMMDDHHMMSSZ`), signed
    /// with `openssl ca`, which (unlike `openssl x509`) takes explicit dates.
    fn signed_for_dates(&self, name: &str, start: &str, end: &str) {
        let d = self.dir.path();
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        fs::write(
            d.join("ca.cnf"),
            format!(
                "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\ndatabase = {db}\nnew_certs_dir = {dir}\nserial = {serial}\n\
                 default_md = sha256\npolicy = any\nunique_subject = no\n[ any ]\ncommonName = supplied\n",
                db = p("index.txt"),
                dir = d.display(),
                serial = p("ca.serial"),
            ),
        )
        .unwrap();
        if !d.join("index.txt").exists() {
            fs::write(d.join("index.txt"), "").unwrap();
            fs::write(d.join("ca.serial"), "1000\n").unwrap();
        }
        self.request(name, "localhost");
        fs::write(
            d.join(format!("{name}.ext")),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        sh(
            "openssl",
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &p("ca.cnf"),
                "-cert",
                &p("ca.pem"),
                "-keyfile",
                &p("ca.key"),
                "-in",
                &p(&format!("{name}.csr")),
                "-out",
                &p(&format!("{name}.pem")),
                "-startdate",
                start,
                "-enddate",
                end,
                "-extfile",
                &p(&format!("{name}.ext")),
            ],
        );
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate signed by the test CA that names `cn` only in its Common Name, with no
    /// subjectAltName (as old tutorials make them); `pair(name)` finds it.
    pub fn signed_cn_only(&self, name: &str, cn: &str) -> CertPair {
        self.request(name, cn);
        // An extension, so the certificate is X.509 v3 (TLS libraries refuse v1 outright).
        fs::write(self.dir.path().join(format!("{name}.ext")), "basicConstraints=CA:FALSE\n").unwrap();
        self.sign_with_ca(name);
        self.pair(name)
    }

    pub fn pair(&self, name: &str) -> CertPair {
        CertPair { cert: self.dir.path().join(format!("{name}.pem")), key: self.dir.path().join(format!("{name}.key")) }
    }

    /// The SHA-256 fingerprint as `openssl x509 -fingerprint` prints it (upper case, colons).
    pub fn fingerprint(&self, name: &str) -> String {
        let out = sh(
            "openssl",
            &["x509", "-noout", "-fingerprint", "-sha256", "-in", self.pair(name).cert.to_str().unwrap()],
        );
        String::from_utf8(out.stdout).unwrap().trim().rsplit('=').next().unwrap().to_string()
    }
}
