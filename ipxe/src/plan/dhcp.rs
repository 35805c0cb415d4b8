//! dnsmasq: full DHCP server or proxy next to another, and where iPXE comes from.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::checks::{check_dir, is_host, is_name};

/// How dnsmasq answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhcpMode {
    /// Full DHCP server: `START,END[,NETMASK][,LEASE]`.
    Range(String),
    /// Proxy DHCP next to another server, for this network address.
    Proxy(String),
}

/// The checked dnsmasq settings.
#[derive(Clone, Debug)]
pub struct DhcpPlan {
    /// Interface.
    pub interface: String,
    /// Server or proxy.
    pub mode: DhcpMode,
    /// Default gateway.
    pub router: Option<String>,
    /// dnsmasq's tftp-root (none: the generated boot folder).
    pub tftp_root: Option<PathBuf>,
    /// Where undionly.kpxe and ipxe.efi come from.
    pub ipxe_dir: Option<PathBuf>,
    /// The boot server's address, named in proxy mode's boot replies.
    pub boot_server: Option<String>,
}

pub(super) fn check(
    x: &crate::description::Dhcp,
    server: Option<&str>,
    p: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<DhcpPlan> {
    let interface = match &x.interface {
        Some(i) if is_name(i) || (i.contains('.') && is_host(i)) => i.clone(),
        Some(i) => {
            p.push(format!(
                "dhcp.interface {i:?}: an interface name such as eth1"
            ));
            i.clone()
        }
        None => {
            p.push(
                "dhcp.interface is missing: the lab network's interface on this server".to_owned(),
            );
            String::new()
        }
    };
    let ip = |what: &str, s: &str, p: &mut Vec<String>| {
        if s.trim().parse::<Ipv4Addr>().is_err() {
            p.push(format!("{what} {s:?}: expected an IPv4 address"));
        }
    };
    let mode = match (&x.range, &x.proxy) {
        (Some(r), None) => {
            let parts: Vec<&str> = r.split(',').map(str::trim).collect();
            if parts.len() < 2 {
                p.push(format!(
                    "dhcp.range {r:?}: expected START,END[,NETMASK][,LEASE]"
                ));
            } else {
                ip("dhcp.range start", parts[0], p);
                ip("dhcp.range end", parts[1], p);
                if let Some(m) = parts.get(2) {
                    ip("dhcp.range netmask", m, p);
                }
            }
            DhcpMode::Range(parts.join(","))
        }
        (None, Some(n)) => {
            ip("dhcp.proxy", n, p);
            if server.is_none() {
                p.push("dhcp.proxy needs server.address: a proxy's replies do not make it the clients' next-server, so iPXE and the netboot initramfs would ask the network's DHCP server for the menu and the NFS root".to_owned());
            }
            DhcpMode::Proxy(n.trim().to_owned())
        }
        _ => {
            p.push("dhcp: set exactly one of range (be the DHCP server) and proxy (answer boot requests next to another DHCP server)".to_owned());
            return None;
        }
    };
    if let Some(r) = &x.router {
        ip("dhcp.router", r, p);
        if matches!(mode, DhcpMode::Proxy(_)) {
            p.push("dhcp.router: only a full DHCP server (range) hands out the gateway".to_owned());
        }
    }
    let ipxe_dir = x.ipxe_dir.as_ref().and_then(|d| {
        let d = check_dir("dhcp.ipxe_dir", d, p)?;
        for f in ["undionly.kpxe", "ipxe.efi"] {
            if !d.join(f).is_file() {
                warnings.push(format!(
                    "dhcp.ipxe_dir {} has no {f} (Debian package ipxe): clients needing it cannot chainload iPXE",
                    d.display()
                ));
            }
        }
        Some(d)
    });
    Some(DhcpPlan {
        interface,
        mode,
        router: x.router.clone(),
        tftp_root: x.tftp_root.clone(),
        ipxe_dir,
        boot_server: server.map(str::to_owned),
    })
}
