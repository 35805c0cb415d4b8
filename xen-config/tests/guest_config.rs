//! xl.cfg generation: each guest type, both accelerator modes, and the combinations
//! that must be refused.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use vfpga_xen::guest::{GuestSpec, Host};

fn host(arch: &str, xen: Option<(u32, u32)>, sysfs: PathBuf) -> Host {
    Host {
        arch: arch.into(),
        xen,
        xen_from_flag: false,
        sysfs,
    }
}

fn spec(s: &str) -> GuestSpec {
    toml::from_str(s).unwrap()
}

const PVH_NFS: &str = r#"
name = "vm1"
type = "pvh"
memory = 512
vcpus = 2
kernel = "/srv/xen/vmlinuz"
ramdisk = "/srv/xen/initrd.gz"
cmdline = "console=hvc0"
[nfs_root]
server = "192.168.42.1"
path = "/srv/nfs/vm1"
[[vif]]
bridge = "xenbr0"
mac = "00:16:3E:12:34:56"
"#;

#[test]
fn pvh_with_nfs_root_and_virtio_on_arm() {
    let s = spec(&format!("{PVH_NFS}[accelerator]\nmode = \"virtio\"\n"));
    let h = host("aarch64", Some((4, 18)), "/nonexistent".into());
    s.validate(&h).unwrap();
    let cfg = s.to_xl_cfg("vm1.toml");
    for line in [
        "name = \"vm1\"",
        "type = \"pvh\"",
        "memory = 512",
        "vcpus = 2",
        "kernel = \"/srv/xen/vmlinuz\"",
        "ramdisk = \"/srv/xen/initrd.gz\"",
        "extra = \"console=hvc0 root=/dev/nfs rw ip=dhcp nfsroot=192.168.42.1:/srv/nfs/vm1,vers=4.2\"",
        "vif = [ \"bridge=xenbr0,mac=00:16:3e:12:34:56\" ]",
        "virtio = [ \"backend=0,type=virtio,device15,transport=mmio\" ]",
    ] {
        assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
    }
}

#[test]
fn hvm_with_pci_passthrough() {
    let sys = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sys.path().join("bus/pci/devices/0000:03:10.1")).unwrap();
    let s = spec(
        r#"
name = "hvm1"
type = "hvm"
memory = 2048
[accelerator]
mode = "pci"
bdf = "03:10.1"
permissive = true
seize = true
rdm_policy = "relaxed"
"#,
    );
    let h = host("x86_64", Some((4, 17)), sys.path().into());
    s.validate(&h).unwrap();
    let cfg = s.to_xl_cfg("hvm1.toml");
    assert!(
        cfg.contains("pci = [ \"0000:03:10.1,permissive=1,seize=1,rdm_policy=relaxed\" ]"),
        "{cfg}"
    );
    assert!(!cfg.contains("kernel"), "{cfg}");
}

#[test]
fn refused_combinations_say_why() {
    let sys = tempfile::tempdir().unwrap();
    let x86 = host("x86_64", Some((4, 17)), sys.path().into());
    let arm_old = host("aarch64", Some((4, 17)), sys.path().into());
    let arm_unknown = host("aarch64", None, sys.path().into());
    let virtio = format!("{PVH_NFS}[accelerator]\nmode = \"virtio\"\n");
    let cases: Vec<(String, &Host, &str)> = vec![
        (virtio.clone(), &x86, "exist on Arm only"),
        (
            virtio.clone(),
            &arm_old,
            "needs Xen 4.18 or later, and the Xen version is 4.17 (this host's /sys/hypervisor/version)",
        ),
        (virtio, &arm_unknown, "give --xen-version"),
        (
            format!("{PVH_NFS}[accelerator]\nmode = \"pci\"\nbdf = \"0000:07:00.0\"\n"),
            &x86,
            "no such PCI function on this host",
        ),
        (
            format!("{PVH_NFS}[accelerator]\nmode = \"pci\"\nbdf = \"7:0.0.0\"\n"),
            &x86,
            "not a PCI address",
        ),
        (
            PVH_NFS.replace("kernel = \"/srv/xen/vmlinuz\"\n", ""),
            &x86,
            "needs kernel",
        ),
        (PVH_NFS.replace("00:16:3E", "01:16:3E"), &x86, "unicast"),
        (
            PVH_NFS.replace("path = \"/srv", "path = \"srv"),
            &x86,
            "absolute path",
        ),
        (
            PVH_NFS.replace("name = \"vm1\"", "name = \"vm 1\""),
            &x86,
            "name",
        ),
        (
            PVH_NFS.replace("type = \"pvh\"", "type = \"pv\""),
            &arm_old,
            "PVH-style guests only",
        ),
        (
            PVH_NFS.replace("memory = 512", "memory = 16"),
            &x86,
            "at least 32 MiB",
        ),
    ];
    for (text, h, want) in cases {
        let e = spec(&text).validate(h).unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    }
    let e = toml::from_str::<GuestSpec>(&format!("{PVH_NFS}[accelerator]\nmode = \"usb\"\n"))
        .unwrap_err();
    assert!(e.to_string().contains("unknown variant"), "{e}");
    let mut rdm = format!(
        "{PVH_NFS}[accelerator]\nmode = \"pci\"\nbdf = \"00:03.0\"\nrdm_policy = \"strict\"\n"
    );
    std::fs::create_dir_all(sys.path().join("bus/pci/devices/0000:00:03.0")).unwrap();
    let e = spec(&rdm).validate(&x86).unwrap_err().to_string();
    assert!(e.contains("HVM guests only"), "{e}");
    rdm = rdm
        .replace("rdm_policy = \"strict\"\n", "")
        .replace("type = \"pvh\"", "type = \"pv\"");
    spec(&rdm).validate(&x86).unwrap();
}

#[test]
fn pci_passthrough_to_a_pvh_guest_on_x86_is_refused() {
    let sys = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sys.path().join("bus/pci/devices/0000:03:00.1")).unwrap();
    let s = spec(&format!(
        "{PVH_NFS}[accelerator]\nmode = \"pci\"\nbdf = \"0000:03:00.1\"\n"
    ));
    let e = s
        .validate(&host("x86_64", Some((4, 17)), sys.path().into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PVH") && e.contains("type = \"hvm\""), "{e}");
    let pv = spec(&format!(
        "{}[accelerator]\nmode = \"pci\"\nbdf = \"0000:03:00.1\"\n",
        PVH_NFS.replace("\"pvh\"", "\"pv\"")
    ));
    pv.validate(&host("x86_64", Some((4, 17)), sys.path().into()))
        .unwrap();
}

/// The description docs/xen.md shows is one the tool accepts, on the host it names
/// (x86 with Xen 4.17, its PCI function present), and it yields what the doc says.
#[test]
fn the_example_in_docs_xen_md_is_accepted() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/xen.md")).unwrap();
    // Blocks open with ```toml and an info string (scripts/test-docs.sh's class).
    let block = doc
        .split("```toml")
        .skip(1)
        .filter_map(|b| b.split_once('\n').map(|(_, rest)| rest))
        .filter_map(|b| b.split_once("```").map(|(t, _)| t))
        .find(|t| t.starts_with("name = "))
        .expect("docs/xen.md has a guest description");
    let s = spec(block);
    let sys = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sys.path().join("bus/pci/devices/0000:03:00.1")).unwrap();
    s.validate(&host("x86_64", Some((4, 17)), sys.path().into()))
        .unwrap();
    let cfg = s.to_xl_cfg("docs/xen.md");
    assert!(
        cfg.contains("nfsroot=192.168.42.1:/srv/nfs/vm1,vers=4.2"),
        "{cfg}"
    );
    assert!(
        cfg.contains("pci = [ \"0000:03:00.1,rdm_policy=strict\" ]"),
        "{cfg}"
    );
}
