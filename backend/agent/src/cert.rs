//! `vfpga-agent cert`: a private CA for one deployment, and the server (board) and
//! client (vfpgad host) certificates it signs. Keys are written readable by their owner
//! only.
//!
//! A client certificate carries its **role**: an `admin` may upload and load
//! bitstreams on the boards (a bitstream is a DMA master: full control of the board),
//! a `run` client may only run kernels. The role is a name in the certificate
//! ([`ADMIN_NAME`]), signed by the CA like the rest, so nobody without the CA's key can
//! add it. Certificates expire (a year by default; the CA in ten), and a board refuses
//! the certificates listed in its revocation file (`cert revoke`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The name an admin client certificate carries besides its own (see the module doc).
pub const ADMIN_NAME: &str = "role-admin.vfpga";

/// What a client may do on a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Run kernels only.
    Run,
    /// Run kernels, upload and load bitstreams.
    Admin,
}

/// Whether client certificate `der` carries the admin role.
pub fn is_admin(der: &rustls_pki_types::CertificateDer<'_>) -> bool {
    vfpga_transport::cert_names(der, ADMIN_NAME)
}

/// The SHA-256 of a certificate (its DER), as `cert revoke` lists it: lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Valid from an hour ago (clocks differ) for `days`.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "vfpga deployment CA");
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The CA as an issuer, rebuilt from its key (same subject and key as the file).
fn issuer(dir: &Path) -> Result<(rcgen::Certificate, KeyPair), String> {
    let key_path = dir.join("ca.key");
    let pem = std::fs::read_to_string(&key_path).map_err(|e| {
        format!(
            "cannot read {} (run `vfpga-agent cert init` first): {e}",
            key_path.display()
        )
    })?;
    let key = KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let cert = ca_params().self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert, key))
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A board's (or vfpgad's, for guests) server certificate.
    Server,
    /// A client's, with its role on the boards.
    Client(Role),
}

/// Issues a certificate for `names` (DNS names or IP addresses; the first is also the
/// common name), valid `days`, into `<prefix>.pem` and `<prefix>.key`; an existing pair
/// is replaced only with `force`, and the CA's never. Returns what it wrote, in words.
pub fn issue(
    dir: &Path,
    prefix: &str,
    names: &[String],
    kind: Kind,
    days: u32,
    force: bool,
) -> Result<String, String> {
    let server = kind == Kind::Server;
    let what = match kind {
        Kind::Server => "a server certificate".to_owned(),
        Kind::Client(Role::Run) => "a client certificate (role run: kernels only)".to_owned(),
        Kind::Client(Role::Admin) => {
            "a client certificate (role admin: may upload and load bitstreams)".to_owned()
        }
    };
    if prefix == "ca" {
        return Err("--prefix ca would replace the CA itself: choose another prefix".into());
    }
    if prefix.is_empty() || prefix.contains('/') {
        return Err(format!(
            "--prefix {prefix:?}: give a file name prefix such as board2"
        ));
    }
    let (pem, key_file) = (
        dir.join(format!("{prefix}.pem")),
        dir.join(format!("{prefix}.key")),
    );
    if !force {
        if let Some(there) = [&pem, &key_file].into_iter().find(|p| p.exists()) {
            return Err(format!(
                "{} exists already: choose another --prefix, or give --force to replace it (whoever uses it now then needs the new one)",
                there.display()
            ));
        }
    }
    let (ca, ca_key) = issuer(dir)?;
    let mut all = names.to_vec();
    if kind == Kind::Client(Role::Admin) {
        all.push(ADMIN_NAME.to_owned());
    }
    let mut p = CertificateParams::new(all).map_err(|e| format!("names {names:?}: {e}"))?;
    validity(&mut p, days);
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("vfpga", String::as_str),
    );
    p.distinguished_name = dn;
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(|e| e.to_string())?;
    write(&pem, &cert.pem(), false)?;
    write(&key_file, &key.serialize_pem(), true)?;
    Ok(format!(
        "wrote {} and {}: {what} for {}, valid {days} days, signed by {}",
        pem.display(),
        key_file.display(),
        names.join(", "),
        dir.join("ca.pem").display()
    ))
}

/// Adds certificate file `cert` to the revocation list `list` (created if missing);
/// boards given `--revoked LIST` refuse it from their next connection on.
pub fn revoke(cert: &Path, list: &Path) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    let ders: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let der = ders
        .first()
        .ok_or_else(|| format!("{}: no certificate in the file", cert.display()))?;
    let fp = fingerprint(der);
    let old = std::fs::read_to_string(list).unwrap_or_default();
    if old.lines().any(|l| l.trim() == fp) {
        return Ok(format!(
            "{} is already revoked in {}",
            cert.display(),
            list.display()
        ));
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    writeln!(f, "{fp}").map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    Ok(format!(
        "revoked {} (sha256 {fp}) in {}: boards reading it refuse it from their next connection",
        cert.display(),
        list.display()
    ))
}

/// Days a leaf certificate is valid by default, and the CA.
pub const DEFAULT_DAYS: u32 = 365;
/// Days the CA is valid.
pub const CA_DAYS: u32 = 3650;

/// Creates the CA (`ca.pem`, `ca.key`) in `dir`, then a server and a client certificate
/// (the client an admin: the deployment's own vfpgad host loads bitstreams).
pub fn init(dir: &Path, server_names: &[String], client_name: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if dir.join("ca.key").exists() {
        return Err(format!("{} already holds a CA; remove it or issue more certificates with `cert server`/`cert client`", dir.display()));
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = ca_params();
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write(&dir.join("ca.pem"), &cert.pem(), false)?;
    write(&dir.join("ca.key"), &key.serialize_pem(), true)?;
    issue(
        dir,
        "server",
        server_names,
        Kind::Server,
        DEFAULT_DAYS,
        false,
    )?;
    issue(
        dir,
        "client",
        &[client_name.to_owned()],
        Kind::Client(Role::Admin),
        DEFAULT_DAYS,
        false,
    )
    .map(drop)
}
