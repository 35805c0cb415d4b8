//! Checks a [`Description`] against the files it names and turns it into a [`Plan`]:
//! everything resolved, defaulted and verified, so that writing the tree cannot fail
//! for a reason the description could have shown. Every problem is reported, not only
//! the first.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::description::{Description, Kind};
use crate::error::Error;
use crate::initramfs::{self, Module};
use crate::probe;

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

/// The checked netboot initramfs.
#[derive(Debug)]
pub struct InitramfsPlan {
    /// Kernel release (the modules folder's name).
    pub kver: String,
    /// `/lib/modules/VERSION`.
    pub modules_dir: PathBuf,
    /// The busybox file.
    pub busybox: PathBuf,
    /// Modules in load order.
    pub modules: Vec<Module>,
    /// gzip the image.
    pub compress: bool,
}

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

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '-' || x == '_')
        && s.len() <= 32
}

fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn one_line(what: &str, s: &str, p: &mut Vec<String>) {
    if s.chars().any(|c| c.is_control()) {
        p.push(format!(
            "{what}: must be one line without control characters"
        ));
    }
}

/// The length a command line will have once iPXE expands the variables we put in.
fn expanded_len(s: &str) -> usize {
    s.replace("${netX/mac:hexhyp}", "00-00-00-00-00-00")
        .replace("${next-server}", "255.255.255.255")
        .len()
}

fn check_file(what: &str, path: &Path, p: &mut Vec<String>) -> Option<Vec<u8>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            p.push(format!("{what} {}: no such file", path.display()));
            None
        }
        Err(e) => {
            p.push(format!("{what} {}: {e}", path.display()));
            None
        }
        Ok(m) if !m.is_file() => {
            p.push(format!("{what} {}: not a regular file", path.display()));
            None
        }
        Ok(_) => match std::fs::read(path) {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(format!("{what} {}: cannot read it: {e}", path.display()));
                None
            }
        },
    }
}

fn check_dir(what: &str, path: &Path, p: &mut Vec<String>) -> Option<PathBuf> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            p.push(format!("{what} {}: no such folder", path.display()));
            None
        }
        Err(e) => {
            p.push(format!("{what} {}: {e}", path.display()));
            None
        }
        Ok(m) if !m.is_dir() => {
            p.push(format!("{what} {}: not a folder", path.display()));
            None
        }
        Ok(_) => match (std::fs::read_dir(path), path.canonicalize()) {
            (Ok(_), Ok(c)) => Some(c),
            (Err(e), _) | (_, Err(e)) => {
                p.push(format!("{what} {}: cannot be read: {e}", path.display()));
                None
            }
        },
    }
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
            (Some(n), _) => Self::nfs(n, &server, &mut p, &mut warnings),
        };

        // --- initramfs ---------------------------------------------------------------
        let wants_netboot = d.entries.iter().any(|e| e.initrd.is_none());
        let initramfs = match (&d.initramfs, wants_netboot) {
            (None, true) => {
                p.push("no [initramfs] section, but entries boot the netboot initramfs (set initramfs.modules_dir, or give those entries an initrd)".to_owned());
                None
            }
            (None, false) => None,
            (Some(i), _) => Self::initramfs(i, &mut p)?,
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
            .and_then(|x| Self::dhcp(x, server.as_deref(), &mut p, &mut warnings));

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

    fn nfs(
        n: &crate::description::Nfs,
        server: &Option<String>,
        p: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Option<NfsPlan> {
        let Some(root) = &n.root else {
            p.push(
                "nfs.root is missing: the folder to export as the guests' root file system"
                    .to_owned(),
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
                "nfs.clients is empty: nobody could mount the root (\"*\" allows everyone)"
                    .to_owned(),
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

    fn initramfs(
        i: &crate::description::Initramfs,
        p: &mut Vec<String>,
    ) -> Result<Option<InitramfsPlan>, Error> {
        let busybox = i
            .busybox
            .clone()
            .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
        if i.busybox.is_none() && !busybox.exists() {
            p.push(format!(
                "initramfs.busybox: this host has no {}: apt-get install busybox-static (a statically linked busybox), or give --busybox PATH (initramfs.busybox)",
                busybox.display()
            ));
        } else if let Some(data) = check_file("initramfs.busybox", &busybox, p) {
            match probe::elf_has_interpreter(&data) {
                Some(false) => {}
                Some(true) => p.push(format!(
                    "initramfs.busybox {}: dynamically linked; the initramfs has no libraries (install busybox-static, whose /bin/busybox is static)",
                    busybox.display()
                )),
                None => p.push(format!(
                    "initramfs.busybox {}: not an ELF program",
                    busybox.display()
                )),
            }
        }
        let Some(md) = &i.modules_dir else {
            p.push(
                "initramfs.modules_dir is missing: /lib/modules/VERSION of the guest kernel"
                    .to_owned(),
            );
            return Ok(None);
        };
        let Some(modules_dir) = check_dir("initramfs.modules_dir", md, p) else {
            return Ok(None);
        };
        let kver = modules_dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut wanted: Vec<String> = i.modules.clone().unwrap_or_else(|| {
            initramfs::DEFAULT_MODULES
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        wanted.extend(i.extra_modules.clone().unwrap_or_default());
        let modules = match initramfs::resolve(&modules_dir, &wanted) {
            Ok(m) => m,
            Err(Error::Invalid(v)) => {
                p.extend(v);
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        Ok(Some(InitramfsPlan {
            kver,
            modules_dir,
            busybox,
            modules,
            compress: i.compress.unwrap_or(true),
        }))
    }

    fn dhcp(
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
                    "dhcp.interface is missing: the lab network's interface on this server"
                        .to_owned(),
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
                p.push(
                    "dhcp.router: only a full DHCP server (range) hands out the gateway".to_owned(),
                );
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
}
