//! The NFS export of the root file system, for the two usual servers:
//! - `ganesha.conf`: a complete nfs-ganesha (user space, FSAL VFS) configuration;
//! - `exports`: the `/etc/exports` line for the kernel's nfsd.
//!
//! Both export the root read-write (unless read-only), without root squashing (a root
//! file system needs root's files), over TCP, NFSv3 and NFSv4, to `nfs.clients`.

use std::fmt::Write as _;

use crate::plan::NfsPlan;

/// nfs-ganesha's configuration.
pub fn ganesha_conf(n: &NfsPlan, source: &str) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# nfs-ganesha configuration written by vfpga-pxe {} from {source}.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        w,
        "# Install as /etc/ganesha/ganesha.conf (Debian: nfs-ganesha, nfs-ganesha-vfs; rpcbind"
    );
    let _ = writeln!(
        w,
        "# must run first), or run: ganesha.nfsd -F -f THIS_FILE -L LOGFILE -p PIDFILE"
    );
    let _ = writeln!(w, "NFS_CORE_PARAM {{");
    if let Some(b) = &n.bind_addr {
        let _ = writeln!(w, "\tBind_addr = {b};");
    }
    let _ = writeln!(w, "\tNFS_Port = {};", n.port);
    let _ = writeln!(w, "\tMNT_Port = {};", n.mount_port);
    let _ = writeln!(w, "\tProtocols = 3, 4;");
    let _ = writeln!(
        w,
        "\t# The netboot initramfs mounts over TCP with nolock: no NLM, RQUOTA or UDP."
    );
    let _ = writeln!(w, "\tEnable_NLM = false;");
    let _ = writeln!(w, "\tEnable_RQUOTA = false;");
    let _ = writeln!(w, "\tEnable_UDP = false;");
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "NFSV4 {{");
    let _ = writeln!(w, "\tMinor_Versions = 0, 1, 2;");
    if n.graceless {
        let _ = writeln!(w, "\tGraceless = true;");
    }
    if let Some(r) = &n.recovery_root {
        let _ = writeln!(w, "\tRecoveryBackend = fs;");
        let _ = writeln!(w, "\tRecoveryRoot = \"{}\";", r.display());
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "NFS_KRB5 {{");
    let _ = writeln!(w, "\tActive_krb5 = false;");
    let _ = writeln!(w, "}}");
    if n.insecure {
        let _ = writeln!(w, "EXPORT_DEFAULTS {{");
        let _ = writeln!(
            w,
            "\t# Clients may use unprivileged source ports (QEMU user networking does)."
        );
        let _ = writeln!(w, "\tPrivilegedPort = false;");
        let _ = writeln!(w, "}}");
    }
    let access = if n.read_only { "RO" } else { "RW" };
    let everyone = n.clients.iter().any(|c| c == "*");
    let _ = writeln!(w, "EXPORT {{");
    let _ = writeln!(w, "\tExport_Id = {};", n.export_id);
    let _ = writeln!(w, "\tPath = \"{}\";", n.root.display());
    let _ = writeln!(w, "\tPseudo = \"{}\";", n.pseudo);
    let _ = writeln!(w, "\tProtocols = 3, 4;");
    let _ = writeln!(w, "\tTransports = TCP;");
    let _ = writeln!(w, "\tSecType = sys;");
    let _ = writeln!(w, "\tSquash = No_Root_Squash;");
    if everyone {
        let _ = writeln!(w, "\tAccess_Type = {access};");
    } else {
        let _ = writeln!(w, "\tAccess_Type = None;");
        let _ = writeln!(w, "\tCLIENT {{");
        let _ = writeln!(w, "\t\tClients = {};", n.clients.join(", "));
        let _ = writeln!(w, "\t\tAccess_Type = {access};");
        let _ = writeln!(w, "\t}}");
    }
    let _ = writeln!(w, "\tFSAL {{");
    let _ = writeln!(w, "\t\tName = VFS;");
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "LOG {{");
    let _ = writeln!(w, "\tDefault_Log_Level = EVENT;");
    let _ = writeln!(w, "}}");
    s
}

/// The `/etc/exports` line (with a comment header) for the kernel NFS server.
pub fn exports(n: &NfsPlan, source: &str) -> String {
    let mut opts = vec![
        if n.read_only { "ro" } else { "rw" },
        "sync",
        "no_subtree_check",
        "no_root_squash",
    ];
    if n.insecure {
        opts.push("insecure");
    }
    let opts = opts.join(",");
    let clients: Vec<String> = n.clients.iter().map(|c| format!("{c}({opts})")).collect();
    let mut s = format!(
        "# /etc/exports line written by vfpga-pxe {} from {source}.\n\
         # Add it to /etc/exports, then run: exportfs -ra\n",
        env!("CARGO_PKG_VERSION"),
    );
    if n.pseudo != n.root.display().to_string() {
        let _ = writeln!(
            s,
            "# The kernel server has no pseudo paths: its NFSv4 clients mount {}, not {}.",
            n.root.display(),
            n.pseudo
        );
    }
    let _ = writeln!(s, "{} {}", n.root.display(), clients.join(" "));
    s
}
