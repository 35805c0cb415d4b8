//! The netboot initramfs: busybox, the NIC and NFS modules with their dependencies (in
//! load order), `/init` (assets/init) and the udhcpc event script
//! (assets/udhcpc.script).
//!
//! Module dependencies come from each module's own `.modinfo` (`depends=`, and the
//! `pre:` part of `softdep=`), as `modinfo` reads them; modules listed in
//! `modules.builtin` are built into the kernel and skipped. Compressed modules
//! (`.ko.xz`, `.ko.zst`, `.ko.gz`) are stored decompressed, so busybox `insmod` loads
//! them whatever the kernel's module decompression support.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::cpio::Cpio;
use crate::error::Error;
use crate::probe;

/// The netboot `/init` (busybox sh).
pub const INIT: &str = include_str!("../assets/init");
/// The udhcpc event script, `/etc/udhcpc/default.script`.
pub const UDHCPC_SCRIPT: &str = include_str!("../assets/udhcpc.script");
/// Modules loaded by default: the virtio NIC and the NFS clients.
pub const DEFAULT_MODULES: &[&str] = &["virtio_pci", "virtio_net", "nfsv4", "nfsv3"];

/// busybox applets linked in /bin: what /init and the udhcpc script use, and a
/// rescue shell's basics.
const APPLETS: &[&str] = &[
    "[",
    "awk",
    "cat",
    "chroot",
    "cp",
    "cttyhack",
    "cut",
    "dmesg",
    "echo",
    "env",
    "false",
    "find",
    "grep",
    "halt",
    "head",
    "hostname",
    "ifconfig",
    "insmod",
    "ip",
    "kill",
    "less",
    "ln",
    "ls",
    "lsmod",
    "mkdir",
    "mknod",
    "mount",
    "mv",
    "ping",
    "poweroff",
    "printf",
    "ps",
    "reboot",
    "rm",
    "route",
    "sed",
    "setsid",
    "sh",
    "sleep",
    "switch_root",
    "sync",
    "tail",
    "test",
    "timeout",
    "tr",
    "true",
    "udhcpc",
    "umount",
    "uname",
    "vi",
    "wc",
];

/// A kernel module to put into the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Name with `_` (as /sys/module shows it).
    pub name: String,
    /// Path under /lib/modules/VERSION, always ending in `.ko`.
    pub rel: String,
    /// The source file.
    pub src: PathBuf,
    /// Decompressed contents.
    pub data: Vec<u8>,
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// `key=value` strings of a module's `.modinfo` section.
fn modinfo<'a>(data: &'a [u8], key: &str) -> Vec<&'a str> {
    let pat = format!("{key}=");
    let pat = pat.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = data[i..].windows(pat.len()).position(|w| w == pat) {
        let at = i + pos;
        i = at + pat.len();
        if at > 0 && data[at - 1] != 0 {
            continue;
        }
        let end = data[i..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |e| i + e);
        if let Ok(v) = std::str::from_utf8(&data[i..end]) {
            out.push(v);
        }
    }
    out
}

/// The modules a module needs loaded first.
fn dependencies(data: &[u8]) -> Vec<String> {
    let mut deps = Vec::new();
    for d in modinfo(data, "depends") {
        deps.extend(d.split(',').filter(|s| !s.is_empty()).map(norm));
    }
    for s in modinfo(data, "softdep") {
        let mut pre = false;
        for w in s.split_whitespace() {
            match w {
                "pre:" => pre = true,
                "post:" => pre = false,
                m if pre => deps.push(norm(m)),
                _ => {}
            }
        }
    }
    deps
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut items: Vec<_> = rd.filter_map(Result::ok).collect();
    items.sort_by_key(|e| e.file_name());
    for e in items {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            walk(&path, &r, out)?;
        } else if [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            out.push((r, path));
        }
    }
    Ok(())
}

/// The module index of `/lib/modules/VERSION`: name → relative path.
fn index(modules_dir: &Path) -> Result<HashMap<String, (String, PathBuf)>, Error> {
    let mut files = Vec::new();
    for top in ["kernel", "updates", "extra"] {
        let d = modules_dir.join(top);
        if d.is_dir() {
            walk(&d, top, &mut files)?;
        }
    }
    let mut idx = HashMap::new();
    for (rel, path) in files {
        let file = rel.rsplit('/').next().unwrap_or(&rel);
        let name = norm(file.split(".ko").next().unwrap_or(file));
        // updates/ and extra/ override kernel/ (depmod's default search order).
        if !rel.starts_with("kernel/") || !idx.contains_key(&name) {
            idx.insert(name, (rel, path));
        }
    }
    Ok(idx)
}

fn builtins(modules_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| norm(f.trim_end_matches(".ko")))
        .collect()
}

/// The modules `wanted` need, dependencies first. Fails naming every module that is
/// neither in `modules_dir` nor built in.
pub fn resolve(modules_dir: &Path, wanted: &[String]) -> Result<Vec<Module>, Error> {
    let idx = index(modules_dir)?;
    if idx.is_empty() {
        return Err(Error::invalid(format!(
            "initramfs.modules_dir {}: no kernel modules under kernel/, updates/ or extra/ (expected /lib/modules/VERSION of the guest kernel)",
            modules_dir.display()
        )));
    }
    let builtin = builtins(modules_dir);
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    // Depth-first, post-order; `seen` also breaks dependency cycles.
    fn visit(
        name: &str,
        needed_by: Option<&str>,
        idx: &HashMap<String, (String, PathBuf)>,
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<Module>,
        missing: &mut Vec<String>,
    ) -> Result<(), Error> {
        if !seen.insert(name.to_owned()) || builtin.contains(name) {
            return Ok(());
        }
        let Some((rel, src)) = idx.get(name) else {
            missing.push(match needed_by {
                Some(by) => format!("{name} (needed by {by})"),
                None => name.to_owned(),
            });
            return Ok(());
        };
        let data = probe::decompress(probe::read(src)?, src)?;
        for dep in dependencies(&data) {
            visit(&dep, Some(name), idx, builtin, seen, order, missing)?;
        }
        let base = rel.split(".ko").next().unwrap_or(rel);
        order.push(Module {
            name: name.to_owned(),
            rel: format!("{base}.ko"),
            src: src.clone(),
            data,
        });
        Ok(())
    }
    for w in wanted {
        visit(
            &norm(w),
            None,
            &idx,
            &builtin,
            &mut seen,
            &mut order,
            &mut missing,
        )?;
    }
    if !missing.is_empty() {
        return Err(Error::Invalid(
            missing
                .into_iter()
                .map(|m| {
                    format!(
                        "initramfs: module {m} is neither in {} nor built into the kernel",
                        modules_dir.display()
                    )
                })
                .collect(),
        ));
    }
    Ok(order)
}

/// What goes into the image.
#[derive(Debug)]
pub struct Image {
    /// Kernel release the modules belong to.
    pub kver: String,
    /// busybox contents.
    pub busybox: Vec<u8>,
    /// Modules in load order.
    pub modules: Vec<Module>,
    /// Text of /etc/netboot/info.
    pub info: String,
}

impl Image {
    /// The `/etc/netboot/modules` list: paths under /lib/modules/VERSION in load order.
    pub fn module_list(&self) -> String {
        let mut s = String::from("# Loaded by /init in this order (dependencies first).\n");
        for m in &self.modules {
            s.push_str(&m.rel);
            s.push('\n');
        }
        s
    }

    /// The uncompressed newc archive. Returns it with a listing of its paths.
    pub fn archive(&self) -> Result<(Vec<u8>, Vec<String>), Error> {
        enum Node<'a> {
            Dir,
            File(u32, &'a [u8]),
            Link(&'a str),
            Char(u32, u32),
        }
        let mut t: BTreeMap<String, Node<'_>> = BTreeMap::new();
        for d in [
            "bin",
            "dev",
            "etc",
            "etc/netboot",
            "etc/udhcpc",
            "lib",
            "newroot",
            "proc",
            "run",
            "sbin",
            "sys",
            "tmp",
            "usr",
            "usr/bin",
            "usr/sbin",
        ] {
            t.insert(d.to_owned(), Node::Dir);
        }
        t.insert("init".into(), Node::File(0o755, INIT.as_bytes()));
        t.insert(
            "etc/udhcpc/default.script".into(),
            Node::File(0o755, UDHCPC_SCRIPT.as_bytes()),
        );
        let list = self.module_list();
        t.insert(
            "etc/netboot/modules".into(),
            Node::File(0o644, list.as_bytes()),
        );
        t.insert(
            "etc/netboot/info".into(),
            Node::File(0o644, self.info.as_bytes()),
        );
        t.insert("bin/busybox".into(), Node::File(0o755, &self.busybox));
        for a in APPLETS {
            t.insert(format!("bin/{a}"), Node::Link("busybox"));
        }
        t.insert("dev/console".into(), Node::Char(5, 1));
        t.insert("dev/null".into(), Node::Char(1, 3));
        for m in &self.modules {
            let p = format!("lib/modules/{}/{}", self.kver, m.rel);
            // Parent folders.
            let mut acc = String::new();
            for c in p.split('/').take(p.split('/').count() - 1) {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(c);
                t.entry(acc.clone()).or_insert(Node::Dir);
            }
            t.insert(p, Node::File(0o644, &m.data));
        }
        let mut c = Cpio::new();
        let mut listing = Vec::new();
        // BTreeMap order puts every folder before what it holds.
        for (path, node) in &t {
            match node {
                Node::Dir => c.dir(path, if path == "tmp" { 0o1777 } else { 0o755 })?,
                Node::File(mode, data) => c.file(path, *mode, data)?,
                Node::Link(target) => c.symlink(path, target)?,
                Node::Char(maj, min) => c.char_dev(path, 0o600, *maj, *min)?,
            }
            listing.push(path.clone());
        }
        Ok((c.finish()?, listing))
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake /lib/modules/VERSION tree: files carrying `.modinfo`-like strings.
    use std::path::Path;

    /// Writes module `rel` (under `dir`) with these `depends=`.
    pub fn module(dir: &Path, rel: &str, depends: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = format!(
            "\x7fELF....\0license=GPL\0depends={depends}\0intree=Y\0name={}\0",
            rel.rsplit('/').next().unwrap().trim_end_matches(".ko")
        );
        std::fs::write(p, data).unwrap();
    }

    /// The modules of the default list, with their real dependency graph.
    pub fn tree(dir: &Path) {
        for (rel, deps) in [
            ("kernel/drivers/virtio/virtio.ko", ""),
            ("kernel/drivers/virtio/virtio_ring.ko", ""),
            ("kernel/drivers/virtio/virtio_pci_legacy_dev.ko", ""),
            ("kernel/drivers/virtio/virtio_pci_modern_dev.ko", ""),
            (
                "kernel/drivers/virtio/virtio_pci.ko",
                "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio",
            ),
            ("kernel/net/core/failover.ko", ""),
            ("kernel/drivers/net/net_failover.ko", "failover"),
            (
                "kernel/drivers/net/virtio_net.ko",
                "virtio_ring,virtio,net_failover",
            ),
            ("kernel/net/sunrpc/sunrpc.ko", ""),
            ("kernel/fs/nfs_common/grace.ko", ""),
            ("kernel/fs/lockd/lockd.ko", "sunrpc,grace"),
            ("kernel/fs/netfs/netfs.ko", ""),
            ("kernel/fs/fscache/fscache.ko", "netfs"),
            ("kernel/fs/nfs/nfs.ko", "sunrpc,fscache,lockd"),
            ("kernel/fs/nfs_common/nfs_acl.ko", "sunrpc"),
            ("kernel/fs/nfs/nfsv3.ko", "nfs,lockd,sunrpc,nfs_acl"),
            ("kernel/net/dns_resolver/dns_resolver.ko", ""),
            ("kernel/fs/nfs/nfsv4.ko", "sunrpc,nfs,dns_resolver"),
        ] {
            module(dir, rel, deps);
        }
        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/net/mii.ko\nkernel/crypto/crc32c_generic.ko\n",
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio;

    fn wanted(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let d = tempfile::tempdir().unwrap();
        fake::tree(d.path());
        let m = resolve(d.path(), &wanted(DEFAULT_MODULES)).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(m.len(), 18, "{names:?}");
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        for (before, after) in [
            ("virtio", "virtio_pci"),
            ("virtio_ring", "virtio_net"),
            ("failover", "net_failover"),
            ("net_failover", "virtio_net"),
            ("sunrpc", "lockd"),
            ("grace", "lockd"),
            ("netfs", "fscache"),
            ("fscache", "nfs"),
            ("nfs", "nfsv4"),
            ("dns_resolver", "nfsv4"),
            ("nfs_acl", "nfsv3"),
        ] {
            assert!(
                pos(before) < pos(after),
                "{before} after {after}: {names:?}"
            );
        }
        assert_eq!(m[pos("nfsv4")].rel, "kernel/fs/nfs/nfsv4.ko");
    }

    #[test]
    fn builtins_and_dashes_and_softdeps() {
        let d = tempfile::tempdir().unwrap();
        fake::tree(d.path());
        fake::module(d.path(), "kernel/drivers/net/ethernet/e1000e.ko", "mii");
        let p = d.path().join("kernel/drivers/net/igb.ko");
        std::fs::write(&p, b"x\0softdep=pre: failover post: grace\0depends=\0").unwrap();
        let m = resolve(d.path(), &wanted(&["e1000e", "igb"])).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["e1000e", "failover", "igb"]);
        let m = resolve(d.path(), &wanted(&["net-failover"])).unwrap();
        assert_eq!(m.last().unwrap().name, "net_failover");
    }

    #[test]
    fn compressed_modules_are_stored_plain() {
        let d = tempfile::tempdir().unwrap();
        fake::tree(d.path());
        let src = d.path().join("kernel/net/core/failover.ko");
        let plain = std::fs::read(&src).unwrap();
        let z = probe::filter("gzip", &["-nc"], &plain, "t").unwrap();
        std::fs::remove_file(&src).unwrap();
        std::fs::write(d.path().join("kernel/net/core/failover.ko.gz"), z).unwrap();
        let m = resolve(d.path(), &wanted(&["net_failover"])).unwrap();
        assert_eq!(m[0].rel, "kernel/net/core/failover.ko");
        assert_eq!(m[0].data, plain);
    }

    #[test]
    fn missing_modules_are_all_named() {
        let d = tempfile::tempdir().unwrap();
        fake::module(d.path(), "kernel/a.ko", "b,c");
        let e = resolve(d.path(), &wanted(&["a", "zz"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("module b (needed by a) is neither in"), "{e}");
        assert!(e.contains("module c (needed by a)"), "{e}");
        assert!(e.contains("module zz is neither"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(empty.path(), &wanted(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no kernel modules under kernel/"), "{e}");
    }

    #[test]
    fn the_image_holds_init_busybox_modules_and_nodes() {
        let d = tempfile::tempdir().unwrap();
        fake::tree(d.path());
        let img = Image {
            kver: "6.1.0-48-amd64".into(),
            busybox: b"BUSYBOX".to_vec(),
            modules: resolve(d.path(), &wanted(&["virtio_net"])).unwrap(),
            info: "kver=6.1.0-48-amd64\n".into(),
        };
        let (bytes, listing) = img.archive().unwrap();
        let e = cpio::read(&bytes).unwrap();
        assert_eq!(e.len(), listing.len());
        let get = |n: &str| {
            e.iter()
                .find(|x| x.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert_eq!(get("init").data, INIT.as_bytes());
        assert_eq!(get("init").mode, 0o100_755);
        assert_eq!(get("etc/udhcpc/default.script").mode, 0o100_755);
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("bin/udhcpc").data, b"busybox");
        assert_eq!(get("bin/switch_root").data, b"busybox");
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("tmp").mode, 0o041_777);
        let list = String::from_utf8(get("etc/netboot/modules").data.clone()).unwrap();
        let mods: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(mods.last(), Some(&"kernel/drivers/net/virtio_net.ko"));
        for m in mods {
            get(&format!("lib/modules/6.1.0-48-amd64/{m}"));
        }
        // Every folder precedes its contents.
        for (i, x) in e.iter().enumerate() {
            if let Some((parent, _)) = x.name.rsplit_once('/') {
                let p = e.iter().position(|y| y.name == parent).unwrap();
                assert!(p < i, "{} before its folder", x.name);
            }
        }
    }

    #[test]
    fn init_reads_the_files_the_image_has() {
        for path in [
            "/etc/netboot/modules",
            "/etc/netboot/info",
            "/etc/udhcpc/default.script",
            "/run/netboot.env",
        ] {
            assert!(INIT.contains(path), "{path}");
        }
        for applet in [
            "udhcpc",
            "switch_root",
            "insmod",
            "setsid",
            "cttyhack",
            "mount",
            "ip",
            "timeout",
        ] {
            assert!(APPLETS.contains(&applet), "{applet}");
        }
    }
}
