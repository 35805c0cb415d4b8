//! `vfpga-agent cert`: a private CA for one deployment, and the server (board) and
//! client (vfpgad host) certificates it signs. Keys are written readable by their owner
//! only.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

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

/// Issues a certificate for `names` (DNS names or IP addresses; the first is also the
/// common name) into `<prefix>.pem` and `<prefix>.key`; an existing pair is replaced
/// only with `force`, and the CA's never. Returns what it wrote, in words.
pub fn issue(
    dir: &Path,
    prefix: &str,
    names: &[String],
    server: bool,
    force: bool,
) -> Result<String, String> {
    let kind = if server { "server" } else { "client" };
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
    let mut p =
        CertificateParams::new(names.to_vec()).map_err(|e| format!("names {names:?}: {e}"))?;
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
        "wrote {} and {}: a {kind} certificate for {}, signed by {}",
        pem.display(),
        key_file.display(),
        names.join(", "),
        dir.join("ca.pem").display()
    ))
}

/// Creates the CA (`ca.pem`, `ca.key`) in `dir`, then a server and a client certificate.
pub fn init(dir: &Path, server_names: &[String], client_name: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if dir.join("ca.key").exists() {
        return Err(format!("{} already holds a CA; remove it or issue more certificates with `cert server`/`cert client`", dir.display()));
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = ca_params().self_signed(&key).map_err(|e| e.to_string())?;
    write(&dir.join("ca.pem"), &cert.pem(), false)?;
    write(&dir.join("ca.key"), &key.serialize_pem(), true)?;
    issue(dir, "server", server_names, true, false)?;
    issue(dir, "client", &[client_name.to_owned()], false, false).map(drop)
}
