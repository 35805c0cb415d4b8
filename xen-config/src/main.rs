//! `vfpga-xen`: configure Xen guests and PCI passthrough for vfpga accelerators.

use std::process::ExitCode;

use clap::Parser;
use vfpga_xen::cli::{Cli, Command, PciCommand, SriovCommand};
use vfpga_xen::guest::{parse_version, GuestSpec, Host};
use vfpga_xen::pci::{assignment_lines, PciDevice, Sysfs};

fn describe(d: &PciDevice) -> String {
    let mut s = format!(
        "{} [{:04x}:{:04x}] class {:06x} driver {}",
        d.bdf,
        d.vendor,
        d.device,
        d.class,
        d.driver.as_deref().unwrap_or("-")
    );
    if let Some(g) = d.iommu_group {
        s.push_str(&format!(" iommu_group {g}"));
    }
    if let Some((n, t)) = d.sriov {
        s.push_str(&format!(" sriov {n}/{t} VFs"));
    }
    if let Some(pf) = d.physfn {
        s.push_str(&format!(" VF of {pf}"));
    }
    s
}

fn pci(sys: &Sysfs, cmd: &PciCommand) -> Result<(), String> {
    match cmd {
        PciCommand::List => {
            for d in sys.devices().map_err(|e| e.to_string())? {
                println!("{}", describe(&d));
            }
        }
        PciCommand::Groups => {
            let groups = sys.iommu_groups().map_err(|e| e.to_string())?;
            if groups.is_empty() {
                println!("no IOMMU groups: the IOMMU is off or absent (boot Linux with intel_iommu=on or amd_iommu=on; Xen enables it with iommu=1)");
            }
            for g in groups {
                let shared = if g.devices.len() > 1 {
                    "  (shared: pass all of these together)"
                } else {
                    ""
                };
                println!("group {}{shared}", g.id);
                for d in &g.devices {
                    println!("  {}", describe(d));
                }
            }
        }
        PciCommand::Sriov { command: None } => {
            let pfs: Vec<PciDevice> = sys
                .devices()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|d| d.sriov.is_some())
                .collect();
            if pfs.is_empty() {
                println!("no SR-IOV physical functions");
            }
            for pf in pfs {
                println!("{}", describe(&pf));
                for vf in sys.vfs(pf.bdf) {
                    match sys.device(vf) {
                        Ok(d) => println!("  {}", describe(&d)),
                        Err(_) => println!("  {vf}"),
                    }
                }
            }
        }
        PciCommand::Sriov {
            command: Some(SriovCommand::Enable { pf, n }),
        } => {
            let vfs = sys.sriov_enable(*pf, *n).map_err(|e| e.to_string())?;
            println!("{pf}: {n} VFs enabled, driver autoprobe off");
            for vf in vfs {
                println!("  {vf}");
            }
        }
        PciCommand::Sriov {
            command: Some(SriovCommand::Disable { pf }),
        } => {
            sys.sriov_disable(*pf).map_err(|e| e.to_string())?;
            println!("{pf}: VFs removed");
        }
        PciCommand::Bind { bdf, driver } => {
            let r = sys.bind(*bdf, *driver).map_err(|e| e.to_string())?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{bdf}: {} {} ({} {})",
                if sys.dry_run() {
                    "would bind to"
                } else {
                    "bound to"
                },
                driver.sysfs_name(),
                if sys.dry_run() { "now" } else { "was" },
                r.previous.as_deref().unwrap_or("unbound")
            );
            for l in assignment_lines(*bdf) {
                println!("  {l}");
            }
        }
        PciCommand::Unbind { bdf } => {
            let before = sys.device(*bdf).map_err(|e| e.to_string())?.driver;
            let now = sys.unbind(*bdf).map_err(|e| e.to_string())?;
            if sys.dry_run() {
                println!(
                    "{bdf}: would be released from {} for the kernel to probe its own driver",
                    before.as_deref().unwrap_or("no driver")
                );
            } else {
                println!(
                    "{bdf}: released (driver now {})",
                    now.as_deref().unwrap_or("none")
                );
            }
        }
        PciCommand::Lines { bdf } => {
            sys.device(*bdf).map_err(|e| e.to_string())?;
            let l = assignment_lines(*bdf);
            println!(
                "# Xen: make it assignable (binds it to pciback), then in xl.cfg:\n{}\n{}",
                l[0], l[1]
            );
            println!(
                "# QEMU/KVM (after `vfpga-xen pci bind {bdf} --driver vfio-pci`):\n{}",
                l[2]
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::GuestConfig {
            description,
            output,
            arch,
            xen_version,
        } => guest_config(
            &cli,
            description,
            output.as_deref(),
            arch.as_deref(),
            xen_version.as_deref(),
        ),
        Command::Pci { command } => {
            let sys = Sysfs::new(&cli.sysfs_root, cli.dry_run);
            let r = pci(&sys, command);
            if cli.dry_run {
                for (path, value) in sys.journal() {
                    println!("would write {:?} to {}", value, path.display());
                }
                println!("(a dry run: nothing was written)");
            }
            r
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfpga-xen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn guest_config(
    cli: &Cli,
    description: &std::path::Path,
    output: Option<&std::path::Path>,
    arch: Option<&str>,
    xen_version: Option<&str>,
) -> Result<(), String> {
    let spec = GuestSpec::load(description).map_err(|e| e.to_string())?;
    let mut host = Host::this_machine();
    host.sysfs.clone_from(&cli.sysfs_root);
    if let Some(a) = arch {
        host.arch = a.to_owned();
    }
    if let Some(v) = xen_version {
        host.xen = Some(
            parse_version(v)
                .ok_or_else(|| format!("--xen-version {v:?}: give MAJOR.MINOR, e.g. 4.18"))?,
        );
        host.xen_from_flag = true;
    }
    spec.validate(&host)
        .map_err(|e| format!("{}: {e}", description.display()))?;
    let text = spec.to_xl_cfg(&description.display().to_string());
    match output {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
