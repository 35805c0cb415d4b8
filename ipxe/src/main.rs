//! `vfpga-pxe`: write the network boot tree for vfpga guests.

use std::process::ExitCode;

use clap::Parser;
use vfpga_pxe::cli::{Cli, Command, Show};
use vfpga_pxe::{generate, Plan, EXAMPLE};

fn summary(p: &Plan) {
    println!("menu: {} (default {}, {} s)", p.title, p.default, p.timeout);
    println!("base URL: {}", p.base_url);
    for e in &p.entries {
        println!("entry {}: {}", e.name, e.title);
        if let Some(x) = &e.xen_src {
            println!("  xen {} {}", x.display(), e.xen_args);
        }
        println!("  kernel {} {}", e.kernel.display(), e.args);
        match &e.initrd {
            vfpga_pxe::plan::Initrd::Netboot => println!("  initrd: the netboot initramfs"),
            vfpga_pxe::plan::Initrd::File(f) => println!("  initrd {}", f.display()),
        }
    }
    if let Some(n) = &p.nfs {
        println!(
            "NFS root: {} (NFSv4 path {}, clients {})",
            n.root.display(),
            n.pseudo,
            n.clients.join(" ")
        );
    }
    if let Some(i) = &p.initramfs {
        let names: Vec<&str> = i.modules.iter().map(|m| m.name.as_str()).collect();
        println!("initramfs: kernel {}, modules {}", i.kver, names.join(" "));
    }
}

fn warn(p: &Plan) {
    for w in &p.warnings {
        eprintln!("vfpga-pxe: warning: {w}");
    }
}

fn run(cli: Cli) -> Result<(), vfpga_pxe::Error> {
    match cli.command {
        Command::Example => print!("{EXAMPLE}"),
        Command::Check { desc, show } => {
            let p = desc.plan()?;
            match show {
                None => summary(&p),
                Some(Show::Menu) => print!("{}", vfpga_pxe::menu::render(&p)),
                Some(Show::Ganesha | Show::Exports) => match &p.nfs {
                    Some(n) if matches!(show, Some(Show::Ganesha)) => {
                        print!("{}", vfpga_pxe::nfs::ganesha_conf(n, &p.source));
                    }
                    Some(n) => print!("{}", vfpga_pxe::nfs::exports(n, &p.source)),
                    None => eprintln!("vfpga-pxe: no [nfs] section"),
                },
                Some(Show::Dnsmasq) => match &p.dhcp {
                    Some(d) => print!(
                        "{}",
                        vfpga_pxe::dnsmasq::render(&p, d, std::path::Path::new("OUT/boot"))
                    ),
                    None => eprintln!("vfpga-pxe: no [dhcp] section"),
                },
            }
            warn(&p);
        }
        Command::Generate { desc, out } => {
            let p = desc.plan()?;
            let report = generate(&p, &out)?;
            for (f, n) in &report.files {
                println!("{:>10}  {}", n, f.display());
            }
            warn(&p);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfpga-pxe: {e}");
            ExitCode::FAILURE
        }
    }
}
