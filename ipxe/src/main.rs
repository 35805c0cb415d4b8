//! `vfpga-pxe`: write the network boot tree for vfpga guests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vfpga_pxe::{generate, plan, Overrides, Plan, EXAMPLE};

const AFTER_HELP: &str = "\
Examples:
  vfpga-pxe example > boot.toml                  an annotated description to start from
  vfpga-pxe check --config boot.toml             check it (and every file it names)
  vfpga-pxe generate --config boot.toml --out /srv/vfpga-pxe
  vfpga-pxe generate --kernel /srv/nfs/root/boot/vmlinuz-6.1.0-48-amd64 \\
      --nfs-root /srv/nfs/root --server 192.168.42.1 --out /srv/vfpga-pxe
                                                 (no file: one Linux entry; --xen adds Xen)
  vfpga-pxe generate --config boot.toml --default xen --base-url http://10.0.2.2:8080/ --out t

What --out holds:
  boot/       serve it over TFTP or HTTP: menu.ipxe (the DHCP boot file), initrd.img (the
              netboot initramfs), NAME/vmlinuz, NAME/initrd.img, NAME/xen (decompressed)
  nfs/        ganesha.conf (nfs-ganesha) and exports (the line for the kernel's nfsd)
  dnsmasq/    vfpga-pxe.conf: DHCP, TFTP and iPXE chainloading (with a [dhcp] section)
  initramfs/  what initrd.img holds, to read: init, udhcpc.script, modules, files.txt

Try it under QEMU (user networking: its TFTP server serves boot/, the host is 10.0.2.2):
  qemu-system-x86_64 -m 1024 -nographic -boot n -device virtio-net-pci,netdev=n0 \\
      -netdev user,id=n0,tftp=OUT/boot,bootfile=menu.ipxe

The netboot initramfs reads from the kernel command line: nfsroot=[SERVER:]PATH[,OPTIONS],
rw or ro, init=PATH, BOOTIF=01-MAC (the menu sets it), vfpga.netdev=NAME,
vfpga.netwait=SECS, vfpga.mountwait=SECS, vfpga.onfail=shell|reboot|poweroff|halt. docs/pxe.md explains a lab
setup step by step.";

/// Network boot for vfpga guests: iPXE menu, TFTP/HTTP tree, netboot initramfs, NFS
/// exports and a dnsmasq snippet, from one TOML description.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the description and write the boot tree.
    Generate {
        #[command(flatten)]
        desc: DescArgs,
        /// Output folder (new, empty, or written by vfpga-pxe before: its boot/, nfs/,
        /// dnsmasq/ and initramfs/ are replaced).
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check the description and every file it names; write nothing.
    Check {
        #[command(flatten)]
        desc: DescArgs,
        /// Also print a generated text file: menu, ganesha, exports or dnsmasq.
        #[arg(long, value_name = "FILE")]
        show: Option<Show>,
    },
    /// Print an annotated example description.
    Example,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Show {
    Menu,
    Ganesha,
    Exports,
    Dnsmasq,
}

#[derive(Debug, Args)]
struct DescArgs {
    /// The boot description (TOML; `vfpga-pxe example` shows every field).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// URL of the boot tree, tftp://HOST/ or http://HOST[:PORT]/PATH/ (server.base_url).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Address of the boot and NFS server as guests reach it (server.address).
    #[arg(long, value_name = "IPV4")]
    server: Option<String>,
    /// Entry booted after the timeout, or `shell` (menu.default).
    #[arg(long, value_name = "NAME")]
    default: Option<String>,
    /// Seconds before the default boots, 0 to wait (menu.timeout).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u32>,
    /// The exported root file system (nfs.root).
    #[arg(long, value_name = "DIR")]
    nfs_root: Option<PathBuf>,
    /// /lib/modules/VERSION of the guest kernel (initramfs.modules_dir; without a file
    /// it defaults to NFS_ROOT/lib/modules/VERSION, else /lib/modules/VERSION, for the
    /// kernel's VERSION).
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// A static busybox (initramfs.busybox; default /bin/busybox).
    #[arg(long, value_name = "FILE")]
    busybox: Option<PathBuf>,
    /// Without --config: the Linux kernel (bzImage) of the `linux` entry.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Without --config: add a `xen` entry booting this hypervisor (xen-*.gz or
    /// decompressed) with the same kernel as dom0.
    #[arg(long, value_name = "FILE")]
    xen: Option<PathBuf>,
    /// Without --config: more kernel command line for the entries.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    args: Option<String>,
}

impl DescArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            base_url: self.base_url.clone(),
            server: self.server.clone(),
            default: self.default.clone(),
            timeout: self.timeout,
            nfs_root: self.nfs_root.clone(),
            modules_dir: self.modules_dir.clone(),
            busybox: self.busybox.clone(),
            kernel: self.kernel.clone(),
            xen: self.xen.clone(),
            args: self.args.clone(),
        }
    }

    fn plan(&self) -> Result<Plan, vfpga_pxe::Error> {
        plan(self.config.as_deref(), &self.overrides())
    }
}

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
