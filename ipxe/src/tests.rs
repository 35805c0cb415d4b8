//! Generation from a description, and every kind of bad description, against a fake
//! world in a temporary folder: a bzImage-like kernel, a /lib/modules tree with the real
//! dependency graph, a static "busybox", a gzip'd multiboot "Xen", an NFS root.

use std::path::{Path, PathBuf};

use crate::description::Overrides;
use crate::error::Error;
use crate::{cpio, generate, initramfs, plan, probe};

const KVER: &str = "6.1.0-48-amd64";

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let w = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = w.path();
        let root = d.join("root");
        for f in [
            "sbin/init",
            "usr/bin/vfpga",
            &format!("lib/modules/{KVER}/extra/virtio_vfpga.ko"),
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let modules = d.join("modules").join(KVER);
        std::fs::create_dir_all(&modules).unwrap();
        initramfs::fake::tree(&modules);
        std::fs::write(d.join("vmlinuz"), probe::fake::bzimage(KVER)).unwrap();
        std::fs::write(
            d.join("vmlinuz-old"),
            probe::fake::bzimage("5.10.0-9-amd64"),
        )
        .unwrap();
        std::fs::write(d.join("busybox"), probe::fake::elf64(false)).unwrap();
        std::fs::write(d.join("busybox-dyn"), probe::fake::elf64(true)).unwrap();
        let xen = probe::fake::multiboot();
        std::fs::write(d.join("xen"), &xen).unwrap();
        let gz = probe::filter("gzip", &["-nc"], &xen, "test").unwrap();
        std::fs::write(d.join("xen.gz"), gz).unwrap();
        std::fs::write(d.join("xen.efi"), b"MZ not multiboot").unwrap();
        std::fs::write(d.join("my-initrd.img"), b"INITRD").unwrap();
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A good description with a Linux and a Xen entry; `extra` is appended.
    fn desc(&self, extra: &str) -> String {
        let d = self.path().display();
        format!(
            r#"[server]
address = "192.168.42.1"
[menu]
title = "lab"
timeout = 5
[nfs]
root = "{d}/root"
clients = ["192.168.42.0/24"]
[initramfs]
modules_dir = "{d}/modules/{KVER}"
busybox = "{d}/busybox"
extra_modules = ["failover"]
[[entry]]
name = "linux"
title = "Linux with vfpga"
kernel = "{d}/vmlinuz"
args = "console=ttyS0,115200"
[[entry]]
name = "xen"
kind = "xen"
xen = "{d}/xen.gz"
kernel = "{d}/vmlinuz"
{extra}"#
        )
    }

    /// Plans `text` (written to a file in the world).
    fn plan(&self, text: &str) -> Result<plan::Plan, Error> {
        self.plan_with(text, &Overrides::default())
    }

    fn plan_with(&self, text: &str, o: &Overrides) -> Result<plan::Plan, Error> {
        let p = self.path().join("boot.toml");
        std::fs::write(&p, text).unwrap();
        crate::plan(Some(&p), o)
    }

    fn out(&self) -> PathBuf {
        self.path().join("out")
    }
}

/// The problems of a description that must fail.
fn problems(r: Result<plan::Plan, Error>) -> String {
    match r {
        Ok(_) => panic!("the description was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_problem(r: Result<plan::Plan, Error>, needle: &str) {
    let e = problems(r);
    assert!(e.contains(needle), "{needle:?} not in:\n{e}");
}

#[test]
fn the_whole_tree_is_written() {
    let w = World::new();
    let p = w.plan(&w.desc("")).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let report = generate(&p, &w.out()).unwrap();
    let out = w.out();
    for f in [
        ".vfpga-pxe",
        "boot/menu.ipxe",
        "boot/initrd.img",
        "boot/linux/vmlinuz",
        "boot/xen/vmlinuz",
        "boot/xen/xen",
        "initramfs/init",
        "initramfs/udhcpc.script",
        "initramfs/modules",
        "initramfs/files.txt",
        "nfs/ganesha.conf",
        "nfs/exports",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
        assert!(
            report.files.iter().any(|(p, _)| p.ends_with(f)),
            "{f} not reported"
        );
    }
    assert!(!out.join("dnsmasq").exists(), "no [dhcp], no snippet");
    // Kernels copied as they are, Xen decompressed.
    let read = |f: &str| std::fs::read(out.join(f)).unwrap();
    assert_eq!(read("boot/linux/vmlinuz"), probe::fake::bzimage(KVER));
    assert_eq!(read("boot/xen/xen"), probe::fake::multiboot());
    // The initramfs: gzip'd newc with /init, busybox, the modules in load order.
    let img = probe::decompress(read("boot/initrd.img"), Path::new("initrd.img")).unwrap();
    let entries = cpio::read(&img).unwrap();
    let get = |n: &str| {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} not in the initramfs"))
    };
    assert_eq!(get("init").data, initramfs::INIT.as_bytes());
    assert_eq!(get("bin/busybox").data, probe::fake::elf64(false));
    let info = String::from_utf8(get("etc/netboot/info").data.clone()).unwrap();
    assert!(info.contains(&format!("kver={KVER}\n")), "{info}");
    let list = String::from_utf8(get("etc/netboot/modules").data.clone()).unwrap();
    assert_eq!(list, String::from_utf8(read("initramfs/modules")).unwrap());
    let mods: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(mods.len(), 18, "{mods:?}");
    assert!(mods.contains(&"kernel/net/core/failover.ko"));
    for m in &mods {
        get(&format!("lib/modules/{KVER}/{m}"));
    }
    let files = String::from_utf8(read("initramfs/files.txt")).unwrap();
    assert_eq!(files.lines().count(), entries.len());
}

#[test]
fn the_menu_has_both_entries_a_shell_and_a_default_with_timeout() {
    let w = World::new();
    let p = w.plan(&w.desc("")).unwrap();
    let m = crate::menu::render(&p);
    for line in [
        "#!ipxe",
        "isset ${base-url} || set base-url tftp://192.168.42.1/",
        "set menu-timeout 5000",
        "set menu-default linux",
        "menu lab",
        "item linux Linux with vfpga",
        "item xen Xen + dom0 (NFS root)",
        "item shell iPXE shell",
        "choose --timeout ${menu-timeout} --default ${menu-default} selected || goto shell",
        "goto ${selected}",
        ":linux",
        &format!(
            "kernel ${{base-url}}linux/vmlinuz initrd=initrd.img nfsroot=192.168.42.1:{}/root rw BOOTIF=01-${{netX/mac:hexhyp}} console=ttyS0,115200 || goto failed",
            w.path().canonicalize().unwrap().display()
        ),
        "initrd --name initrd.img ${base-url}initrd.img || goto failed",
        ":xen",
        "kernel ${base-url}xen/xen dom0_mem=1024M,max:1024M console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all || goto failed",
        "module ${base-url}initrd.img || goto failed",
        ":shell",
        "shell",
        ":failed",
    ] {
        assert!(m.lines().any(|l| l == line), "menu lacks {line:?}:\n{m}");
    }
    // Multiboot order: Xen, then dom0's kernel, then its initrd.
    let xen = m.find(":xen").unwrap();
    let k = m[xen..].find("kernel ${base-url}xen/xen").unwrap();
    let v = m[xen..]
        .find("module ${base-url}xen/vmlinuz nfsroot=")
        .unwrap();
    let i = m[xen..].find("module ${base-url}initrd.img").unwrap();
    assert!(k < v && v < i, "{m}");
    assert!(
        m[xen..].contains("console=hvc0 earlyprintk=xen || goto failed"),
        "{m}"
    );
    // Every goto target exists.
    for l in m.lines() {
        if let Some(t) = l.split("goto ").nth(1) {
            let t = t.split_whitespace().next().unwrap();
            if !t.starts_with("${") {
                assert!(m.lines().any(|x| x == format!(":{t}")), "no label {t}");
            }
        }
    }
}

#[test]
fn flags_override_the_file() {
    let w = World::new();
    let p = w
        .plan_with(
            &w.desc(""),
            &Overrides {
                base_url: Some("http://10.0.2.2:8080".into()),
                default: Some("xen".into()),
                timeout: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p.base_url, "http://10.0.2.2:8080/");
    let m = crate::menu::render(&p);
    assert!(m.contains("set menu-default xen\n"), "{m}");
    assert!(m.contains("set menu-timeout 0\n"), "{m}");
    assert!(m.contains("set base-url http://10.0.2.2:8080/\n"), "{m}");
}

#[test]
fn flags_alone_make_a_tree_with_the_roots_modules() {
    let w = World::new();
    let d = w.path();
    // The kernel's modules in the NFS root: found without --modules-dir.
    let rm = d.join("root/lib/modules").join(KVER);
    initramfs::fake::tree(&rm);
    let o = Overrides {
        kernel: Some(d.join("vmlinuz")),
        xen: Some(d.join("xen")),
        nfs_root: Some(d.join("root")),
        busybox: Some(d.join("busybox")),
        server: Some("10.0.0.1".into()),
        args: Some("console=ttyS0".into()),
        ..Default::default()
    };
    let p = crate::plan(None, &o).unwrap();
    assert_eq!(p.source, "command line flags");
    assert_eq!(p.entries.len(), 2);
    assert_eq!(
        p.initramfs.as_ref().unwrap().modules_dir,
        rm.canonicalize().unwrap()
    );
    generate(&p, &w.out()).unwrap();
    assert!(w.out().join("boot/xen/xen").is_file());
}

#[test]
fn nfsroot_follows_version_server_and_mode() {
    let w = World::new();
    let root = w.path().canonicalize().unwrap().join("root");
    let args = |extra: &str, server: bool| {
        let mut text = w.desc("").replace(
            "clients = [\"192.168.42.0/24\"]",
            &format!("clients = [\"192.168.42.0/24\"]\n{extra}"),
        );
        if !server {
            text = text.replace("address = \"192.168.42.1\"\n", "");
        }
        w.plan(&text).unwrap().nfs.unwrap().kernel_args()
    };
    assert_eq!(
        args("", true),
        format!("nfsroot=192.168.42.1:{} rw", root.display())
    );
    assert_eq!(
        args(
            "version = \"3\"\nread_only = true\noptions = \"timeo=600\"",
            true
        ),
        format!(
            "nfsroot=192.168.42.1:{},vers=3,timeo=600 ro",
            root.display()
        )
    );
    assert_eq!(
        args("version = \"4.2\"\npseudo = \"/vfpga\"", false),
        "nfsroot=/vfpga,vers=4.2 rw"
    );
    // Without an address, iPXE's next-server.
    let p = w
        .plan(&w.desc("").replace("address = \"192.168.42.1\"\n", ""))
        .unwrap();
    assert_eq!(p.base_url, "tftp://${next-server}/");
}

#[test]
fn nfs_exports_for_ganesha_and_the_kernel_server() {
    let w = World::new();
    let p = w
        .plan(&w.desc("").replace(
            "clients = [\"192.168.42.0/24\"]",
            "clients = [\"192.168.42.0/24\", \"10.1.0.7\"]\ninsecure = true\n[nfs.ganesha]\nbind_addr = \"192.168.42.1\"\nrecovery_root = \"/var/lib/vfpga/ganesha\"",
        ))
        .unwrap();
    let n = p.nfs.as_ref().unwrap();
    let root = n.root.display().to_string();
    let g = crate::nfs::ganesha_conf(n, "boot.toml");
    for l in [
        "\tBind_addr = 192.168.42.1;",
        "\tNFS_Port = 2049;",
        "\tMNT_Port = 20048;",
        "\tRecoveryRoot = \"/var/lib/vfpga/ganesha\";",
        "\tPrivilegedPort = false;",
        &format!("\tPath = \"{root}\";"),
        &format!("\tPseudo = \"{root}\";"),
        "\tSquash = No_Root_Squash;",
        "\tAccess_Type = None;",
        "\t\tClients = 192.168.42.0/24, 10.1.0.7;",
        "\t\tAccess_Type = RW;",
        "\t\tName = VFS;",
    ] {
        assert!(g.lines().any(|x| x == l), "ganesha.conf lacks {l:?}:\n{g}");
    }
    assert_eq!(g.matches('{').count(), g.matches('}').count(), "{g}");
    let e = crate::nfs::exports(n, "boot.toml");
    let line = e.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(
        line,
        format!(
            "{root} 192.168.42.0/24(rw,sync,no_subtree_check,no_root_squash,insecure) 10.1.0.7(rw,sync,no_subtree_check,no_root_squash,insecure)"
        )
    );
}

#[test]
fn dnsmasq_snippet_for_a_dhcp_server_and_a_proxy() {
    let w = World::new();
    let ipxe = w.path().join("ipxe");
    std::fs::create_dir_all(&ipxe).unwrap();
    std::fs::write(ipxe.join("undionly.kpxe"), b"kpxe").unwrap();
    std::fs::write(ipxe.join("ipxe.efi"), b"efi").unwrap();
    let server = w.desc("").replace(
        "[[entry]]\nname = \"linux\"",
        &format!(
            "[dhcp]\ninterface = \"eth1\"\nrange = \"192.168.42.100, 192.168.42.200,255.255.255.0,12h\"\nrouter = \"192.168.42.1\"\nipxe_dir = \"{}\"\n[[entry]]\nname = \"linux\"",
            ipxe.display()
        ),
    );
    let p = w.plan(&server).unwrap();
    generate(&p, &w.out()).unwrap();
    let out = w.out().canonicalize().unwrap();
    let s = std::fs::read_to_string(out.join("dnsmasq/vfpga-pxe.conf")).unwrap();
    for l in [
        "port=0",
        "interface=eth1",
        "dhcp-range=192.168.42.100,192.168.42.200,255.255.255.0,12h",
        "dhcp-option=option:router,192.168.42.1",
        "enable-tftp",
        &format!("tftp-root={}", out.join("boot").display()),
        "dhcp-match=set:ipxe,175",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
        "dhcp-boot=tag:ipxe,tftp://192.168.42.1/menu.ipxe",
    ] {
        assert!(s.lines().any(|x| x == l), "snippet lacks {l:?}:\n{s}");
    }
    assert_eq!(
        std::fs::read(out.join("boot/undionly.kpxe")).unwrap(),
        b"kpxe"
    );
    assert_eq!(std::fs::read(out.join("boot/ipxe.efi")).unwrap(), b"efi");

    let no_address = w
        .desc("")
        .replace("address = \"192.168.42.1\"\n", "")
        .replace(
            "[[entry]]\nname = \"linux\"",
            "[dhcp]\ninterface = \"eth1\"\nproxy = \"192.168.42.0\"\n[[entry]]\nname = \"linux\"",
        );
    assert_problem(w.plan(&no_address), "dhcp.proxy needs server.address");
    // Without ipxe_dir, boot/ holds no iPXE image: plain PXE ROMs are offered nothing
    // (rather than a file that is not there), and the snippet says why.
    let bare = w.desc("").replace(
        "[[entry]]\nname = \"linux\"",
        "[dhcp]\ninterface = \"eth1\"\nproxy = \"192.168.42.0\"\n[[entry]]\nname = \"linux\"",
    );
    let p = w.plan(&bare).unwrap();
    let s = crate::dnsmasq::render(&p, p.dhcp.as_ref().unwrap(), Path::new("/srv/boot"));
    assert!(
        !s.contains("undionly.kpxe\n") && !s.contains("pxe-service"),
        "{s}"
    );
    assert!(
        s.contains("Plain PXE ROMs get nothing: dhcp.ipxe_dir is unset"),
        "{s}"
    );
    assert!(
        s.contains("dhcp-boot=tag:ipxe,tftp://192.168.42.1/menu.ipxe,,192.168.42.1"),
        "{s}"
    );
    let proxy = w.desc("").replace(
        "[[entry]]\nname = \"linux\"",
        &format!(
            "[dhcp]\ninterface = \"eth1\"\nproxy = \"192.168.42.0\"\nipxe_dir = \"{}\"\n[[entry]]\nname = \"linux\"",
            ipxe.display()
        ),
    );
    let p = w.plan(&proxy).unwrap();
    let d = p.dhcp.as_ref().unwrap();
    let s = crate::dnsmasq::render(&p, d, Path::new("/srv/boot"));
    for l in [
        "dhcp-range=192.168.42.0,proxy",
        "pxe-service=tag:!ipxe,x86PC,\"vfpga: load iPXE\",undionly.kpxe",
        "pxe-service=tag:!ipxe,X86-64_EFI,\"vfpga: load iPXE\",ipxe.efi",
        "pxe-service=tag:!ipxe,BC_EFI,\"vfpga: load iPXE\",ipxe.efi",
        "dhcp-boot=tag:ipxe,tftp://192.168.42.1/menu.ipxe,,192.168.42.1",
        "tftp-root=/srv/boot",
    ] {
        assert!(s.lines().any(|x| x == l), "proxy snippet lacks {l:?}:\n{s}");
    }
}

#[test]
fn regenerating_replaces_the_tree_but_a_foreign_folder_is_refused() {
    let w = World::new();
    let p = w.plan(&w.desc("")).unwrap();
    generate(&p, &w.out()).unwrap();
    std::fs::write(w.out().join("boot/stale"), b"x").unwrap();
    generate(&p, &w.out()).unwrap();
    assert!(!w.out().join("boot/stale").exists());
    let foreign = w.path().join("home");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), b"x").unwrap();
    let e = generate(&p, &foreign).unwrap_err().to_string();
    assert!(e.contains("not empty and not written by vfpga-pxe"), "{e}");
    assert!(foreign.join("thesis.tex").exists());
}

#[test]
fn a_missing_kernel_file_is_named() {
    let w = World::new();
    let d = w.path().display().to_string();
    assert_problem(
        w.plan(
            &w.desc("")
                .replacen(&format!("{d}/vmlinuz"), "/nonexistent/vmlinuz", 1),
        ),
        "entry linux: kernel /nonexistent/vmlinuz: no such file",
    );
    assert_problem(
        w.plan(&w.desc("").replace(
            "kind = \"xen\"",
            "kind = \"xen\"\ninitrd = \"/nonexistent/initrd\"",
        )),
        "entry xen: initrd /nonexistent/initrd: no such file",
    );
    assert_problem(
        w.plan(&w.desc("").replace("kernel = ", "# kernel = ")),
        "entry linux: no kernel",
    );
}

#[test]
fn a_kernel_that_is_no_bzimage_or_of_another_release_is_refused() {
    let w = World::new();
    let d = w.path().display().to_string();
    assert_problem(
        w.plan(
            &w.desc("")
                .replacen(&format!("{d}/vmlinuz"), &format!("{d}/busybox"), 1),
        ),
        "is not a bzImage",
    );
    assert_problem(
        w.plan(
            &w.desc("")
                .replacen(&format!("{d}/vmlinuz"), &format!("{d}/vmlinuz-old"), 1),
        ),
        &format!("is release 5.10.0-9-amd64, but initramfs.modules_dir holds modules of {KVER}"),
    );
}

#[test]
fn an_unusable_export_path_is_refused() {
    let w = World::new();
    let d = w.path().display().to_string();
    assert_problem(
        w.plan(
            &w.desc("")
                .replace(&format!("{d}/root\""), "/nonexistent/root\""),
        ),
        "nfs.root /nonexistent/root: no such folder",
    );
    assert_problem(
        w.plan(
            &w.desc("")
                .replace(&format!("{d}/root\""), &format!("{d}/vmlinuz\"")),
        ),
        "not a folder",
    );
    assert_problem(
        w.plan(&w.desc("").replace(&format!("{d}/root\""), "/\"")),
        "nfs.root is /",
    );
    assert_problem(
        w.plan(&w.desc("").replace(
            "clients = [\"192.168.42.0/24\"]",
            "clients = [\"192.168.42.0/24\"]\npseudo = \"/vfpga\"",
        )),
        "nfs.pseudo /vfpga differs from nfs.root",
    );
    assert_problem(
        w.plan(&w.desc("").replace("[nfs]\nroot = ", "[nfs]\n# root = ")),
        "nfs.root is missing",
    );
    assert_problem(
        w.plan(
            &w.desc("")
                .replace("clients = [\"192.168.42.0/24\"]", "clients = [\"a b\"]"),
        ),
        "nfs.clients entry \"a b\"",
    );
}

#[test]
fn duplicate_bad_and_reserved_entry_names_are_refused() {
    let w = World::new();
    assert_problem(
        w.plan(&w.desc("").replace("name = \"xen\"", "name = \"linux\"")),
        "entry name \"linux\" is used twice",
    );
    assert_problem(
        w.plan(&w.desc("").replace("name = \"xen\"", "name = \"my xen\"")),
        "entry name \"my xen\": use 1-32 letters",
    );
    assert_problem(
        w.plan(&w.desc("").replace("name = \"xen\"", "name = \"shell\"")),
        "entry name \"shell\" is reserved",
    );
    let no_entries = w.desc("");
    let no_entries = &no_entries[..no_entries.find("[[entry]]").unwrap()];
    assert_problem(w.plan(no_entries), "no [[entry]]");
}

#[test]
fn an_unknown_default_lists_the_entries() {
    let w = World::new();
    assert_problem(
        w.plan(
            &w.desc("")
                .replace("timeout = 5", "timeout = 5\ndefault = \"windows\""),
        ),
        "menu.default \"windows\" is not an entry (have: linux, xen, shell)",
    );
    // "shell" is fine while there is a shell entry, not without.
    w.plan(
        &w.desc("")
            .replace("timeout = 5", "timeout = 5\ndefault = \"shell\""),
    )
    .unwrap();
    assert_problem(
        w.plan(&w.desc("").replace(
            "timeout = 5",
            "timeout = 5\ndefault = \"shell\"\nshell = false",
        )),
        "menu.default \"shell\" is not an entry (have: linux, xen)",
    );
}

#[test]
fn xen_entries_need_a_multiboot_xen_and_linux_entries_none() {
    let w = World::new();
    let d = w.path().display().to_string();
    assert_problem(
        w.plan(&w.desc("").replace(&format!("xen = \"{d}/xen.gz\""), "")),
        "entry xen: no xen",
    );
    assert_problem(
        w.plan(&w.desc("").replace("xen.gz", "xen.efi")),
        "has no multiboot header in its first 8 KiB",
    );
    assert_problem(
        w.plan(&w.desc("").replace("xen.gz", "xen-missing.gz")),
        "entry xen: xen ",
    );
    assert_problem(
        w.plan(&w.desc("").replace(
            "title = \"Linux with vfpga\"",
            "title = \"Linux with vfpga\"\nxen_args = \"loglvl=all\"",
        )),
        "entry linux: xen and xen_args belong to entries with kind = \"xen\"",
    );
    // A decompressed Xen works as well as the .gz.
    w.plan(&w.desc("").replace("xen.gz", "xen")).unwrap();
}

#[test]
fn the_multiboot_command_line_limit_is_checked() {
    let w = World::new();
    let long = format!("args = \"{}\"\n", "vfpga.pad=xxxxxxxxxx ".repeat(25));
    assert_problem(
        w.plan(&w.desc(&long)),
        "iPXE passes at most 512 to a multiboot kernel",
    );
    let longer = format!("{}\n", "x".repeat(2100));
    assert_problem(
        w.plan(&w.desc("").replace(
            "args = \"console=ttyS0,115200\"",
            &format!("args = \"{}\"", longer.trim()),
        )),
        "Linux takes at most 2047",
    );
}

#[test]
fn initramfs_problems_are_named() {
    let w = World::new();
    let d = w.path().display().to_string();
    assert_problem(
        w.plan(
            &w.desc("")
                .replace(&format!("{d}/busybox\""), &format!("{d}/busybox-dyn\"")),
        ),
        "dynamically linked; the initramfs has no libraries (install busybox-static",
    );
    assert_problem(
        w.plan(&w.desc("").replace("[\"failover\"]", "[\"igb\"]")),
        "module igb is neither in",
    );
    assert_problem(
        w.plan(
            &w.desc("")
                .replace(&format!("{d}/modules/{KVER}"), "/nonexistent/6.1"),
        ),
        "initramfs.modules_dir /nonexistent/6.1: no such folder",
    );
    assert_problem(
        w.plan(
            &w.desc("")
                .replace("[initramfs]\nmodules_dir", "[initramfs]\n# modules_dir"),
        ),
        "initramfs.modules_dir is missing",
    );
}

#[test]
fn server_url_version_and_dhcp_values_are_checked() {
    let w = World::new();
    assert_problem(
        w.plan(
            &w.desc("")
                .replace("address = \"192.168.42.1\"", "address = \"lab-server\""),
        ),
        "server.address \"lab-server\": expected an IPv4 address",
    );
    assert_problem(
        w.plan(&w.desc("").replace(
            "address = \"192.168.42.1\"",
            "address = \"192.168.42.1\"\nbase_url = \"ftp://x/\"",
        )),
        "server.base_url \"ftp://x/\"",
    );
    assert_problem(
        w.plan(&w.desc("").replace(
            "clients = [\"192.168.42.0/24\"]",
            "clients = [\"192.168.42.0/24\"]\nversion = \"5\"",
        )),
        "nfs.version \"5\": expected auto, 3, 4, 4.1 or 4.2",
    );
    let dhcp = |body: &str| {
        w.desc("").replace(
            "[[entry]]\nname = \"linux\"",
            &format!("[dhcp]\n{body}\n[[entry]]\nname = \"linux\""),
        )
    };
    assert_problem(
        w.plan(&dhcp(
            "interface = \"eth1\"\nrange = \"1.2.3.4,1.2.3.9\"\nproxy = \"1.2.3.0\"",
        )),
        "dhcp: set exactly one of range",
    );
    assert_problem(
        w.plan(&dhcp("range = \"1.2.3.4,1.2.3.9\"")),
        "dhcp.interface is missing",
    );
    assert_problem(
        w.plan(&dhcp("interface = \"eth1\"\nrange = \"1.2.3.4\"")),
        "dhcp.range \"1.2.3.4\": expected START,END",
    );
    assert_problem(
        w.plan(&dhcp(
            "interface = \"eth1\"\nproxy = \"1.2.3.0\"\nrouter = \"1.2.3.1\"",
        )),
        "only a full DHCP server (range) hands out the gateway",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let w = World::new();
    let d = w.path().display().to_string();
    let e = problems(
        w.plan(
            &w.desc("")
                .replace("name = \"xen\"", "name = \"linux\"")
                .replacen(&format!("{d}/vmlinuz"), "/nonexistent/vmlinuz", 1)
                .replace(&format!("{d}/root\""), "/nonexistent/root\""),
        ),
    );
    assert!(e.starts_with("the description has 3 problems:"), "{e}");
    for n in ["used twice", "/nonexistent/vmlinuz", "/nonexistent/root"] {
        assert!(e.contains(n), "{n}: {e}");
    }
}

#[test]
fn warnings_for_a_root_without_accelerator_bits() {
    let w = World::new();
    std::fs::remove_file(
        w.path()
            .join(format!("root/lib/modules/{KVER}/extra/virtio_vfpga.ko")),
    )
    .unwrap();
    std::fs::remove_file(w.path().join("root/usr/bin/vfpga")).unwrap();
    std::fs::remove_file(w.path().join("root/sbin/init")).unwrap();
    let p = w.plan(&w.desc("")).unwrap();
    let all = p.warnings.join("\n");
    for n in ["no virtio_vfpga.ko", "no vfpga CLI", "no sbin/init"] {
        assert!(all.contains(n), "{n}: {all}");
    }
    // Everyone allowed to write the root: warned.
    let p = w
        .plan(&w.desc("").replace("clients = [\"192.168.42.0/24\"]\n", ""))
        .unwrap();
    assert!(p
        .warnings
        .iter()
        .any(|x| x.contains("anyone who reaches the server")));
}

#[test]
fn the_example_is_a_complete_description() {
    // Parses with every field known (the files it names exist only in a lab).
    let d = crate::Description::parse(crate::EXAMPLE, Path::new("example.toml"), Path::new("/"))
        .unwrap();
    assert_eq!(d.entries.len(), 2);
    assert!(d.dhcp.is_some());
    let e = problems(crate::plan::Plan::new(&d, "example.toml"));
    assert!(
        e.contains("nfs.root /srv/nfs/debian-vfpga: no such folder"),
        "{e}"
    );
}
