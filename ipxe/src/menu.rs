//! `menu.ipxe`: the iPXE script the DHCP boot file points to.
//!
//! Every URL is `${base-url}` + a path in the boot tree; a script that chains this one
//! may set `base-url` first to serve the same tree from elsewhere. Linux entries load a
//! bzImage and an initrd (`initrd=initrd.img` names it for EFI builds of iPXE); Xen
//! entries load Xen as a multiboot kernel with dom0's kernel and initrd as modules
//! (`kernel xen ARGS`, `module vmlinuz ARGS`, `module initrd`), which iPXE supports in
//! its BIOS builds. Each entry starts with `imgfree`, so that returning to the menu
//! after a failed download does not leave stale images behind.

use std::fmt::Write as _;

use crate::description::Kind;
use crate::plan::Plan;

fn words(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The script.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "#!ipxe");
    let _ = writeln!(
        w,
        "# Written by vfpga-pxe {} from {}. Do not edit: change the description and",
        env!("CARGO_PKG_VERSION"),
        plan.source
    );
    let _ = writeln!(w, "# run vfpga-pxe again.");
    let _ = writeln!(w);
    let _ = writeln!(w, "isset ${{base-url}} || set base-url {}", plan.base_url);
    let _ = writeln!(w, "set menu-timeout {}", u64::from(plan.timeout) * 1000);
    let _ = writeln!(w, "set menu-default {}", plan.default);
    let _ = writeln!(w);
    let _ = writeln!(w, ":start");
    let _ = writeln!(w, "menu {}", plan.title);
    for e in &plan.entries {
        let _ = writeln!(w, "item {} {}", e.name, e.title);
    }
    if plan.shell {
        let _ = writeln!(w, "item --gap");
        let _ = writeln!(w, "item shell iPXE shell");
    }
    let fallback = if plan.shell { "shell" } else { "start" };
    let _ = writeln!(
        w,
        "choose --timeout ${{menu-timeout}} --default ${{menu-default}} selected || goto {fallback}"
    );
    let _ = writeln!(w, "# Back in the menu later, wait for a choice.");
    let _ = writeln!(w, "set menu-timeout 0");
    let _ = writeln!(w, "goto ${{selected}}");
    for e in &plan.entries {
        let _ = writeln!(w);
        let _ = writeln!(w, ":{}", e.name);
        let _ = writeln!(w, "imgfree");
        let _ = writeln!(w, "echo Booting {}", e.title);
        match e.kind {
            Kind::Linux => {
                let _ = writeln!(
                    w,
                    "kernel ${{base-url}}{} {} || goto failed",
                    e.kernel_file(),
                    words(&["initrd=initrd.img", &e.args])
                );
                let _ = writeln!(
                    w,
                    "initrd --name initrd.img ${{base-url}}{} || goto failed",
                    e.initrd_file()
                );
            }
            Kind::Xen => {
                let _ = writeln!(
                    w,
                    "kernel {} || goto failed",
                    words(&[&format!("${{base-url}}{}", e.xen_file()), &e.xen_args])
                );
                let _ = writeln!(
                    w,
                    "module {} || goto failed",
                    words(&[&format!("${{base-url}}{}", e.kernel_file()), &e.args])
                );
                let _ = writeln!(w, "module ${{base-url}}{} || goto failed", e.initrd_file());
            }
        }
        let _ = writeln!(w, "boot || goto failed");
    }
    if plan.shell {
        let _ = writeln!(w);
        let _ = writeln!(w, ":shell");
        let _ = writeln!(w, "echo Type exit to return to the menu.");
        let _ = writeln!(w, "shell");
        let _ = writeln!(w, "goto start");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, ":failed");
    let _ = writeln!(w, "echo Boot failed: ${{errno}}");
    if plan.shell {
        let _ = writeln!(
            w,
            "prompt --timeout 10000 Press a key for the iPXE shell, or wait for the menu... && goto shell || goto start"
        );
    } else {
        let _ = writeln!(w, "sleep 10");
        let _ = writeln!(w, "goto start");
    }
    s
}
