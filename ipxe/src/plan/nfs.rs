//! The NFS root: the export, nfs-ganesha's settings and the guests' mount options.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::checks::check_dir;

/// The checked NFS export.
#[derive(Clone, Debug)]
pub struct NfsPlan {
    /// The exported folder (canonical).
    pub root: PathBuf,
    /// Its NFSv4 path.
    pub pseudo: String,
    /// Server address in `nfsroot=` (none: the DHCP next-server).
    pub server: Option<String>,
    /// Forced version (none: 4.2 then 3).
    pub version: Option<String>,
    /// Extra mount options.
    pub options: Option<String>,
    /// Read-only.
    pub read_only: bool,
    /// Who may mount.
    pub clients: Vec<String>,
    /// Unprivileged source ports accepted.
    pub insecure: bool,
    /// nfs-ganesha: listen address.
    pub bind_addr: Option<String>,
    /// nfs-ganesha: NFS port.
    pub port: u16,
    /// nfs-ganesha: MOUNT port.
    pub mount_port: u16,
    /// nfs-ganesha: export id.
    pub export_id: u16,
    /// nfs-ganesha: NFSv4 recovery folder.
    pub recovery_root: Option<PathBuf>,
    /// nfs-ganesha: no grace period.
    pub graceless: bool,
}

impl NfsPlan {
    /// `nfsroot=[SERVER:]PATH[,vers=V][,OPTIONS] rw|ro` for the netboot /init.
    pub fn kernel_args(&self) -> String {
        let path = match self.version.as_deref() {
            Some("3") => self.root.display().to_string(),
            _ => self.pseudo.clone(),
        };
        let mut s = String::from("nfsroot=");
        if let Some(server) = &self.server {
            s.push_str(server);
            s.push(':');
        }
        s.push_str(&path);
        if let Some(v) = &self.version {
            s.push_str(",vers=");
            s.push_str(v);
        }
        if let Some(o) = &self.options {
            s.push(',');
            s.push_str(o);
        }
        s.push_str(if self.read_only { " ro" } else { " rw" });
        s
    }
}

pub(super) fn check(
    n: &crate::description::Nfs,
    server: &Option<String>,
    p: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<NfsPlan> {
    let Some(root) = &n.root else {
        p.push(
            "nfs.root is missing: the folder to export as the guests' root file system".to_owned(),
        );
        return None;
    };
    let root = check_dir("nfs.root", root, p)?;
    let root_s = root.display().to_string();
    if root_s
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == ',' || c.is_control())
    {
        p.push(format!(
            "nfs.root {root_s:?}: no blanks, quotes or commas (they break exports and nfsroot=)"
        ));
    }
    if root == Path::new("/") {
        p.push(
            "nfs.root is /: export a folder holding the guests' root, not this machine's"
                .to_owned(),
        );
    }
    let pseudo = n.pseudo.clone().unwrap_or_else(|| root_s.clone());
    if !pseudo.starts_with('/')
        || pseudo
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == ',')
    {
        p.push(format!(
            "nfs.pseudo {pseudo:?}: an absolute path without blanks, quotes or commas"
        ));
    }
    let version = match n.version.as_deref() {
        None | Some("auto") => None,
        Some(v @ ("3" | "4" | "4.1" | "4.2")) => Some(v.to_owned()),
        Some(v) => {
            p.push(format!(
                "nfs.version {v:?}: expected auto, 3, 4, 4.1 or 4.2"
            ));
            None
        }
    };
    if version.is_none() && pseudo != root_s {
        p.push(format!(
            "nfs.pseudo {pseudo} differs from nfs.root {root_s}: with version auto the guest falls back to NFSv3, which mounts the real path; drop pseudo or set version = \"4.2\""
        ));
    }
    let server = n.server.clone().or_else(|| server.clone());
    if let Some(s) = &server {
        if s.parse::<Ipv4Addr>().is_err() {
            p.push(format!(
                "nfs.server {s:?}: expected an IPv4 address (the netboot initramfs hands it to the kernel's NFS client as addr=, which takes no host names)"
            ));
        }
    }
    if let Some(o) = &n.options {
        if o.chars().any(char::is_whitespace) || o.contains("vers=") {
            p.push(format!(
                "nfs.options {o:?}: comma-separated options without blanks (the version goes in nfs.version)"
            ));
        }
    }
    let clients = n.clients.clone().unwrap_or_else(|| vec!["*".to_owned()]);
    if clients.is_empty() {
        p.push(
            "nfs.clients is empty: nobody could mount the root (\"*\" allows everyone)".to_owned(),
        );
    }
    for c in &clients {
        if c.is_empty()
            || c.chars()
                .any(|x| x.is_whitespace() || "(),;\"{}".contains(x))
        {
            p.push(format!(
                "nfs.clients entry {c:?}: one address, network (a.b.c.d/len), host name or *"
            ));
        }
    }
    if clients.iter().any(|c| c == "*") && !n.read_only.unwrap_or(false) {
        warnings.push("nfs.clients is \"*\": anyone who reaches the server may write the root file system as root (set clients to the lab network)".to_owned());
    }
    if let Some(b) = &n.ganesha.bind_addr {
        if b.parse::<std::net::IpAddr>().is_err() {
            p.push(format!(
                "nfs.ganesha.bind_addr {b:?}: expected an IP address"
            ));
        }
    }
    let port = n.ganesha.port.unwrap_or(2049);
    let mount_port = n.ganesha.mount_port.unwrap_or(20048);
    if port == 0 || mount_port == 0 || port == mount_port {
        p.push(format!(
            "nfs.ganesha ports {port} (NFS) and {mount_port} (MOUNT): two different non-zero ports"
        ));
    }
    if port != 2049 && version.as_deref() != Some("3") {
        warnings.push(format!(
            "nfs.ganesha.port {port}: the guest's mounts use 2049 unless nfs.options has port={port}"
        ));
    }
    if let Some(r) = &n.ganesha.recovery_root {
        if r.display().to_string().contains('"') || r.is_relative() {
            p.push(format!(
                "nfs.ganesha.recovery_root {}: an absolute path without quotes",
                r.display()
            ));
        }
    }
    Some(NfsPlan {
        root,
        pseudo,
        server,
        version,
        options: n.options.clone(),
        read_only: n.read_only.unwrap_or(false),
        clients,
        insecure: n.insecure.unwrap_or(false),
        bind_addr: n.ganesha.bind_addr.clone(),
        port,
        mount_port,
        export_id: n.ganesha.export_id.unwrap_or(1),
        recovery_root: n.ganesha.recovery_root.clone(),
        graceless: n.ganesha.graceless.unwrap_or(false),
    })
}
