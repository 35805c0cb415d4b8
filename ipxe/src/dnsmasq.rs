//! The dnsmasq snippet for a lab network: DHCP (as the network's server, or as a proxy
//! next to another one), TFTP from the boot folder, and iPXE chainloading: a plain PXE
//! ROM first gets iPXE (`undionly.kpxe` for BIOS, `ipxe.efi` for x86-64 UEFI); iPXE
//! then asks again, identifies itself (option 175, user class `iPXE`) and gets the
//! menu.

use std::fmt::Write as _;
use std::path::Path;

use crate::plan::{DhcpMode, DhcpPlan, Plan};

/// The menu's address as a DHCP boot file name: a relative TFTP name when the tree is
/// served by TFTP from the next-server (dnsmasq itself), else the full URL.
pub fn menu_boot_file(plan: &Plan) -> String {
    if plan.base_url == "tftp://${next-server}/" {
        "menu.ipxe".to_owned()
    } else {
        format!("{}menu.ipxe", plan.base_url)
    }
}

/// The snippet. `boot_dir` is the generated boot folder (the default tftp-root).
pub fn render(plan: &Plan, d: &DhcpPlan, boot_dir: &Path) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# dnsmasq configuration written by vfpga-pxe {} from {}.",
        env!("CARGO_PKG_VERSION"),
        plan.source
    );
    let _ = writeln!(
        w,
        "# Install as /etc/dnsmasq.d/vfpga-pxe.conf (Debian: dnsmasq), check with"
    );
    let _ = writeln!(w, "# `dnsmasq --test -C THIS_FILE`, then restart dnsmasq.");
    let _ = writeln!(w);
    let _ = writeln!(w, "# DHCP and TFTP on the lab interface only; no DNS.");
    let _ = writeln!(w, "port=0");
    let _ = writeln!(w, "interface={}", d.interface);
    let _ = writeln!(w, "bind-interfaces");
    let _ = writeln!(w, "log-dhcp");
    let _ = writeln!(
        w,
        "# Keep the boot file and server name in their own fields (some PXE ROMs need it)."
    );
    let _ = writeln!(w, "dhcp-no-override");
    let _ = writeln!(w);
    match &d.mode {
        DhcpMode::Range(r) => {
            let _ = writeln!(w, "# This server hands out addresses on the lab network.");
            let _ = writeln!(w, "dhcp-range={r}");
            if let Some(gw) = &d.router {
                let _ = writeln!(w, "dhcp-option=option:router,{gw}");
            }
        }
        DhcpMode::Proxy(net) => {
            let _ = writeln!(
                w,
                "# Another DHCP server hands out addresses; this one only answers boot requests."
            );
            let _ = writeln!(w, "dhcp-range={net},proxy");
        }
    }
    let _ = writeln!(w);
    let tftp_root = d.tftp_root.as_deref().unwrap_or(boot_dir);
    let _ = writeln!(w, "# The boot folder (menu.ipxe, kernels, initrds, Xen).");
    let _ = writeln!(w, "enable-tftp");
    let _ = writeln!(w, "tftp-root={}", tftp_root.display());
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# iPXE sends option 175 and the user class \"iPXE\"; PXE ROMs send neither."
    );
    let _ = writeln!(w, "dhcp-match=set:ipxe,175");
    let _ = writeln!(w, "dhcp-userclass=set:ipxe,iPXE");
    let _ = writeln!(w, "# UEFI x86-64 firmware (client architecture 7 or 9).");
    let _ = writeln!(w, "dhcp-match=set:efi64,option:client-arch,7");
    let _ = writeln!(w, "dhcp-match=set:efi64,option:client-arch,9");
    let _ = writeln!(w);
    if d.ipxe_dir.is_none() {
        // Without iPXE images in the boot folder a plain ROM would be sent to a file
        // that is not there: offer it nothing, and say why.
        let _ = writeln!(
            w,
            "# Plain PXE ROMs get nothing: dhcp.ipxe_dir is unset, so boot/ holds no\n\
             # undionly.kpxe or ipxe.efi to chainload (apt-get install ipxe, then\n\
             # ipxe_dir = \"/usr/lib/ipxe\"). iPXE ROMs (QEMU's, many NICs') boot as they are."
        );
    } else {
        let _ = writeln!(
            w,
            "# Plain PXE ROMs load iPXE first (from Debian's ipxe package), which asks again."
        );
        match &d.mode {
            DhcpMode::Range(_) => {
                let _ = writeln!(w, "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe");
                let _ = writeln!(w, "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi");
            }
            DhcpMode::Proxy(_) => {
                let _ = writeln!(
                    w,
                    "pxe-service=tag:!ipxe,x86PC,\"vfpga: load iPXE\",undionly.kpxe"
                );
                // UEFI ROMs send architecture 7 (dnsmasq's BC_EFI) or 9 (X86-64_EFI).
                for arch in ["BC_EFI", "X86-64_EFI"] {
                    let _ = writeln!(
                        w,
                        "pxe-service=tag:!ipxe,{arch},\"vfpga: load iPXE\",ipxe.efi"
                    );
                }
            }
        }
    }
    let _ = writeln!(w, "# iPXE gets the menu.");
    match (&d.mode, &d.boot_server) {
        // A proxy's reply names no next-server unless the boot line does.
        (DhcpMode::Proxy(_), Some(addr)) => {
            let _ = writeln!(w, "dhcp-boot=tag:ipxe,{},,{addr}", menu_boot_file(plan));
        }
        _ => {
            let _ = writeln!(w, "dhcp-boot=tag:ipxe,{}", menu_boot_file(plan));
        }
    }
    s
}
