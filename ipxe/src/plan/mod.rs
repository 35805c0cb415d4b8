//! Checks a [`Description`] against the files it names and turns it into a [`Plan`]:
//! everything resolved, defaulted and verified, so that writing the tree cannot fail
//! for a reason the description could have shown. Every problem is reported, not only
//! the first.

use std::net::Ipv4Addr;
use std::path::PathBuf;

mod checks;
mod dhcp;
mod initramfs;
mod nfs;

use crate::description::{Description, Kind};
use crate::error::Error;
use crate::probe;
use checks::{check_file, expanded_len, is_name, one_line};
pub use dhcp::{DhcpMode, DhcpPlan};
pub use initramfs::InitramfsPlan;
pub use nfs::NfsPlan;

/// Xen's command line when an entry gives none.
pub const DEFAULT_XEN_ARGS: &str =
    "dom0_mem=1024M,max:1024M console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all";
/// dom0's command line when a Xen entry gives no `args`.
pub const DEFAULT_DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen";
/// What iPXE sets BOOTIF from: the MAC of the interface it booted through.
pub const BOOTIF: &str = "BOOTIF=01-${netX/mac:hexhyp}";
/// iPXE's limit for all multiboot command lines together, with each image's URI
/// (MB_MAX_CMDLINE in src/arch/x86/image/multiboot.c); longer ones are cut silently.
pub const MULTIBOOT_CMDLINE_MAX: usize = 512;
/// The x86 Linux command line limit (COMMAND_LINE_SIZE, with its NUL).
pub const LINUX_CMDLINE_MAX: usize = 2048;
/// Labels the menu itself uses.
const RESERVED: &[&str] = &["shell", "start", "failed"];

/// The initrd an entry boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Initrd {
    /// The generated netboot initramfs (`initrd.img` at the top of the tree).
    Netboot,
    /// A file of the user's, copied to `NAME/initrd.img`.
    File(PathBuf),
}

/// A checked menu entry.
#[derive(Clone, Debug)]
pub struct EntryPlan {
    /// Label and folder.
    pub name: String,
    /// Menu text.
    pub title: String,
    /// Linux or Xen.
    pub kind: Kind,
    /// The kernel file.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Initrd,
    /// The kernel's (dom0's) command line, without `initrd=`.
    pub args: String,
    /// Xen: the hypervisor, decompressed.
    pub xen_image: Option<Vec<u8>>,
    /// Xen: its source file.
    pub xen_src: Option<PathBuf>,
    /// Xen: its command line.
    pub xen_args: String,
}

impl EntryPlan {
    /// The kernel's path in the boot tree.
    pub fn kernel_file(&self) -> String {
        format!("{}/vmlinuz", self.name)
    }
    /// The initrd's path in the boot tree.
    pub fn initrd_file(&self) -> String {
        match self.initrd {
            Initrd::Netboot => "initrd.img".to_owned(),
            Initrd::File(_) => format!("{}/initrd.img", self.name),
        }
    }
    /// Xen's path in the boot tree.
    pub fn xen_file(&self) -> String {
        format!("{}/xen", self.name)
    }
}

/// Everything the generator writes, checked.
#[derive(Debug)]
pub struct Plan {
    /// Where the description came from (for file headers).
    pub source: String,
    /// Menu title.
    pub title: String,
    /// Boot tree URL, ending in `/`.
    pub base_url: String,
    /// Server address, if given.
    pub server: Option<String>,
    /// Default entry.
    pub default: String,
    /// Seconds before the default boots (0: wait).
    pub timeout: u32,
    /// Offer the iPXE shell.
    pub shell: bool,
    /// Entries in menu order.
    pub entries: Vec<EntryPlan>,
    /// The NFS export, if any entry uses the NFS root.
    pub nfs: Option<NfsPlan>,
    /// The netboot initramfs, if any entry boots it.
    pub initramfs: Option<InitramfsPlan>,
    /// dnsmasq settings.
    pub dhcp: Option<DhcpPlan>,
    /// Things that will not stop the boot tree from being written but may stop a guest
    /// from booting.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Checks `d`. `source` names it in generated files' headers.
    pub fn new(d: &Description, source: &str) -> Result<Self, Error> {
        let mut p: Vec<String> = Vec::new();
        let mut warnings = Vec::new();

        // --- server and menu ---------------------------------------------------------
        let server = d.server.address.clone();
        if let Some(a) = &server {
            if a.parse::<Ipv4Addr>().is_err() {
                p.push(format!("server.address {a:?}: expected an IPv4 address"));
            }
        }
        let base_url = match (&d.server.base_url, &server) {
            (Some(u), _) => {
                let u = u.trim();
                if !(u.starts_with("tftp://")
                    || u.starts_with("http://")
                    || u.starts_with("https://"))
                {
                    p.push(format!(
                        "server.base_url {u:?}: expected tftp://HOST/ or http://HOST[:PORT]/PATH/"
                    ));
                }
                one_line("server.base_url", u, &mut p);
                if u.contains(' ') {
                    p.push(format!("server.base_url {u:?}: no spaces"));
                }
                if u.ends_with('/') {
                    u.to_owned()
                } else {
                    format!("{u}/")
                }
            }
            (None, Some(a)) => format!("tftp://{a}/"),
            (None, None) => "tftp://${next-server}/".to_owned(),
        };
        let title = d
            .menu
            .title
            .clone()
            .unwrap_or_else(|| "vfpga network boot".to_owned());
        one_line("menu.title", &title, &mut p);
        let timeout = d.menu.timeout.unwrap_or(5);
        if timeout > 86_400 {
            p.push(format!(
                "menu.timeout {timeout}: at most 86400 seconds (0 waits for a choice)"
            ));
        }
        let shell = d.menu.shell.unwrap_or(true);

        // --- entries (names first: later checks use them) -----------------------------
        if d.entries.is_empty() {
            p.push("no [[entry]]: describe at least one menu entry".to_owned());
        }
        let mut names: Vec<&str> = Vec::new();
        for e in &d.entries {
            if !is_name(&e.name) {
                p.push(format!(
                    "entry name {:?}: use 1-32 letters, digits, - or _, starting with a letter or digit",
                    e.name
                ));
            } else if RESERVED.contains(&e.name.as_str()) {
                p.push(format!(
                    "entry name {:?} is reserved for the menu itself",
                    e.name
                ));
            }
            if names.contains(&e.name.as_str()) {
                p.push(format!(
                    "entry name {:?} is used twice: names must be unique",
                    e.name
                ));
            }
            names.push(&e.name);
        }
        let default = match &d.menu.default {
            Some(n) if names.contains(&n.as_str()) => n.clone(),
            Some(n) if n == "shell" && shell => n.clone(),
            Some(n) => {
                let mut have: Vec<&str> = names.clone();
                if shell {
                    have.push("shell");
                }
                p.push(format!(
                    "menu.default {n:?} is not an entry (have: {})",
                    have.join(", ")
                ));
                n.clone()
            }
            None => names
                .first()
                .map_or_else(|| "shell".to_owned(), |n| (*n).to_owned()),
        };

        // --- NFS ---------------------------------------------------------------------
        let wants_nfs = d.entries.iter().any(|e| e.nfs_root.unwrap_or(true));
        let nfs = match (&d.nfs, wants_nfs) {
            (None, true) => {
                p.push("no [nfs] section, but entries boot from the NFS root (set nfs.root, or nfs_root = false in those entries)".to_owned());
                None
            }
            (None, false) => None,
            (Some(n), _) => nfs::check(n, &server, &mut p, &mut warnings),
        };

        // --- initramfs ---------------------------------------------------------------
        let wants_netboot = d.entries.iter().any(|e| e.initrd.is_none());
        let initramfs = match (&d.initramfs, wants_netboot) {
            (None, true) => {
                p.push("no [initramfs] section, but entries boot the netboot initramfs (set initramfs.modules_dir, or give those entries an initrd)".to_owned());
                None
            }
            (None, false) => None,
            (Some(i), _) => initramfs::check(i, &mut p)?,
        };
        let kver = initramfs.as_ref().map(|i| i.kver.clone());

        if let (Some(n), Some(k)) = (&nfs, &kver) {
            let mods = n.root.join("lib/modules").join(k);
            let ko_found = ["extra", "updates", "kernel/drivers/misc"]
                .iter()
                .any(|d| mods.join(d).join("virtio_vfpga.ko").is_file());
            if !ko_found {
                warnings.push(format!(
                    "the NFS root has no virtio_vfpga.ko under {}/extra: guests will not see the accelerator until it is installed there",
                    mods.display()
                ));
            }
            if !["usr/bin/vfpga", "usr/local/bin/vfpga", "bin/vfpga"]
                .iter()
                .any(|f| n.root.join(f).is_file())
            {
                warnings.push(format!(
                    "the NFS root {} has no vfpga CLI (usr/bin, usr/local/bin or bin)",
                    n.root.display()
                ));
            }
        }

        let mut entries = Vec::new();
        for e in &d.entries {
            let what = format!("entry {}", e.name);
            let mut args: Vec<String> = Vec::new();
            if e.nfs_root.unwrap_or(true) {
                if let Some(n) = &nfs {
                    if e.initrd.is_some() {
                        // What initramfs-tools and dracut look for besides nfsroot=.
                        args.push("root=/dev/nfs ip=dhcp".to_owned());
                    }
                    args.push(n.kernel_args());
                    let init_given = e
                        .args
                        .as_deref()
                        .is_some_and(|a| a.split_whitespace().any(|w| w.starts_with("init=")));
                    let init = n.root.join("sbin/init");
                    if !init_given && init.symlink_metadata().is_err() {
                        warnings.push(format!(
                            "{what}: the NFS root has no sbin/init (add init=PATH to args)"
                        ));
                    }
                }
            }
            if e.initrd.is_none() {
                args.push(BOOTIF.to_owned());
            }
            let user = match (e.kind, &e.args) {
                (_, Some(a)) => a.trim().to_owned(),
                (Kind::Xen, None) => DEFAULT_DOM0_ARGS.to_owned(),
                (Kind::Linux, None) => String::new(),
            };
            one_line(&format!("{what}: args"), &user, &mut p);
            if !user.is_empty() {
                args.push(user);
            }
            let args = args.join(" ");

            let kernel = match &e.kernel {
                None => {
                    p.push(format!(
                        "{what}: no kernel (kernel = \"/boot/vmlinuz-VERSION\")"
                    ));
                    PathBuf::new()
                }
                Some(k) => {
                    if let Some(data) = check_file(&format!("{what}: kernel"), k, &mut p) {
                        let bz = probe::is_bzimage(&data);
                        match e.kind {
                            Kind::Linux if !bz => p.push(format!(
                                "{what}: kernel {} is not a bzImage (iPXE boots a Linux bzImage, e.g. /boot/vmlinuz-*)",
                                k.display()
                            )),
                            Kind::Xen if !bz && !probe::is_elf(&data) => p.push(format!(
                                "{what}: kernel {} is neither a bzImage nor an ELF vmlinux",
                                k.display()
                            )),
                            _ => {}
                        }
                        if let (true, Some(want), Some(have), true) =
                            (bz, &kver, probe::bzimage_release(&data), e.initrd.is_none())
                        {
                            if &have != want {
                                p.push(format!(
                                    "{what}: kernel {} is release {have}, but initramfs.modules_dir holds modules of {want}: the netboot initramfs could not load them",
                                    k.display()
                                ));
                            }
                        }
                    }
                    k.clone()
                }
            };
            let initrd = match &e.initrd {
                None => Initrd::Netboot,
                Some(i) => {
                    check_file(&format!("{what}: initrd"), i, &mut p);
                    Initrd::File(i.clone())
                }
            };
            let (xen_image, xen_src, xen_args) = match e.kind {
                Kind::Linux => {
                    if e.xen.is_some() || e.xen_args.is_some() {
                        p.push(format!(
                            "{what}: xen and xen_args belong to entries with kind = \"xen\""
                        ));
                    }
                    (None, None, String::new())
                }
                Kind::Xen => {
                    let xa = e
                        .xen_args
                        .clone()
                        .unwrap_or_else(|| DEFAULT_XEN_ARGS.to_owned());
                    one_line(&format!("{what}: xen_args"), &xa, &mut p);
                    let img = match &e.xen {
                        None => {
                            p.push(format!(
                                "{what}: no xen (xen = \"/boot/xen-4.17-amd64.gz\")"
                            ));
                            None
                        }
                        Some(x) => check_file(&format!("{what}: xen"), x, &mut p).and_then(
                            |data| match probe::decompress(data, x) {
                                Err(err) => {
                                    p.push(format!("{what}: xen: {err}"));
                                    None
                                }
                                Ok(img) if !probe::has_multiboot_header(&img) => {
                                    p.push(format!(
                                        "{what}: xen {} has no multiboot header in its first 8 KiB (give xen-VERSION-amd64[.gz] from xen-hypervisor-*, not xen.efi)",
                                        x.display()
                                    ));
                                    None
                                }
                                Ok(img) => Some(img),
                            },
                        ),
                    };
                    (img, e.xen.clone(), xa)
                }
            };
            let title = e.title.clone().unwrap_or_else(|| {
                match (e.kind, e.nfs_root.unwrap_or(true)) {
                    (Kind::Linux, true) => "Linux guest with accelerator (NFS root)",
                    (Kind::Linux, false) => "Linux guest with accelerator",
                    (Kind::Xen, true) => "Xen + dom0 (NFS root)",
                    (Kind::Xen, false) => "Xen + dom0",
                }
                .to_owned()
            });
            one_line(&format!("{what}: title"), &title, &mut p);
            let plan = EntryPlan {
                name: e.name.clone(),
                title,
                kind: e.kind,
                kernel,
                initrd,
                args,
                xen_image,
                xen_src,
                xen_args,
            };
            Self::check_lengths(&plan, &base_url, &mut p);
            entries.push(plan);
        }

        let dhcp = d
            .dhcp
            .as_ref()
            .and_then(|x| dhcp::check(x, server.as_deref(), &mut p, &mut warnings));

        if !p.is_empty() {
            return Err(Error::Invalid(p));
        }
        Ok(Plan {
            source: source.to_owned(),
            title,
            base_url,
            server,
            default,
            timeout,
            shell,
            entries,
            nfs,
            initramfs,
            dhcp,
            warnings,
        })
    }

    fn check_lengths(e: &EntryPlan, base: &str, p: &mut Vec<String>) {
        let url = |f: &str| expanded_len(base) + f.len();
        match e.kind {
            Kind::Linux => {
                let n = "initrd=initrd.img ".len() + expanded_len(&e.args);
                if n >= LINUX_CMDLINE_MAX {
                    p.push(format!(
                        "entry {}: the kernel command line has {n} characters; Linux takes at most {}",
                        e.name,
                        LINUX_CMDLINE_MAX - 1
                    ));
                }
            }
            Kind::Xen => {
                // Each image's URI, a space, its arguments and a NUL.
                let n = url(&e.xen_file())
                    + 1
                    + expanded_len(&e.xen_args)
                    + 1
                    + url(&e.kernel_file())
                    + 1
                    + expanded_len(&e.args)
                    + 1
                    + url(&e.initrd_file())
                    + 1;
                if n > MULTIBOOT_CMDLINE_MAX {
                    p.push(format!(
                        "entry {}: Xen's, dom0's and the initrd's command lines with their URLs take {n} bytes, but iPXE passes at most {MULTIBOOT_CMDLINE_MAX} to a multiboot kernel (and cuts the rest silently): shorten args, xen_args or the base URL",
                        e.name
                    ));
                }
            }
        }
    }
}
