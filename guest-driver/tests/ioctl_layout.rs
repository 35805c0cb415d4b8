//! Proves the Rust ioctl structures and numbers equal `kmod/uapi/vfpga_ioctl.h` as the
//! machine's C compiler lays them out.

use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use vfpga::ioctl::*;

/// `(C expression, Rust value)` pairs: sizes, offsets, ioctl numbers.
fn facts() -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = Vec::new();
    macro_rules! s {
        ($t:ty, $c:literal, [$($f:ident),*]) => {
            v.push((format!("sizeof(struct {})", $c), size_of::<$t>() as u64));
            $( v.push((format!("offsetof(struct {}, {})", $c, stringify!($f)), offset_of!($t, $f) as u64)); )*
        };
    }
    s!(
        IocArg,
        "vfpga_ioc_arg",
        [kind, ty, flags, buf_id, value, addr]
    );
    s!(
        IocRun,
        "vfpga_ioc_run",
        [
            session,
            n_args,
            flags,
            args,
            status,
            segments,
            detail,
            written,
            duration_ns
        ]
    );
    s!(
        IocList,
        "vfpga_ioc_list",
        [descs, start, capacity, count, total, status, reserved]
    );
    s!(
        IocSession,
        "vfpga_ioc_session",
        [name, session, status, reserved]
    );
    s!(IocInfo, "vfpga_ioc_info", [info, status, reserved]);
    s!(
        IocStats,
        "vfpga_ioc_stats",
        [session, stats, status, reserved]
    );
    s!(IocNop, "vfpga_ioc_nop", [duration_ns, status, reserved]);
    s!(IocLimits, "vfpga_ioc_limits", [limits, status, reserved]);
    s!(
        IocRegister,
        "vfpga_ioc_register",
        [addr, len, flags, id, segments, reserved]
    );
    for (n, r) in [
        ("VFPGA_IOC_INFO", INFO),
        ("VFPGA_IOC_LIST_KERNELS", LIST_KERNELS),
        ("VFPGA_IOC_OPEN_SESSION", OPEN_SESSION),
        ("VFPGA_IOC_CLOSE_SESSION", CLOSE_SESSION),
        ("VFPGA_IOC_RUN", RUN),
        ("VFPGA_IOC_LOAD_BITSTREAM", LOAD_BITSTREAM),
        ("VFPGA_IOC_STATS", STATS),
        ("VFPGA_IOC_NOP", NOP),
        ("VFPGA_IOC_LIMITS", LIMITS),
        ("VFPGA_IOC_REGISTER", REGISTER),
        ("VFPGA_IOC_UNREGISTER", UNREGISTER),
        ("VFPGA_IOC_ARG_REGISTERED", u64::from(ARG_REGISTERED)),
        ("VFPGA_REG_READ_ONLY", u64::from(REG_READ_ONLY)),
    ] {
        v.push((n.to_owned(), r));
    }
    v
}

#[test]
fn ioctl_header_matches_rust() {
    let facts = facts();
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"vfpga_ioctl.h\"\nint main(void)\n{\n",
    );
    for (expr, _) in &facts {
        let _ = writeln!(c, "\tprintf(\"%llu\\n\", (unsigned long long)({expr}));");
    }
    c.push_str("\treturn 0;\n}\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let (src, exe) = (dir.path().join("l.c"), dir.path().join("l"));
    std::fs::write(&src, c).expect("write");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(&cc)
        .args(["-Wall", "-Werror", "-I"])
        .arg(root.join("kmod/uapi"))
        .arg("-I")
        .arg(root.join("../proto/include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(ok.success(), "the ioctl header does not compile");
    let out = Command::new(&exe).output().expect("run");
    let got: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().expect("number"))
        .collect();
    assert_eq!(got.len(), facts.len());
    for ((expr, want), got) in facts.iter().zip(got) {
        assert_eq!(got, *want, "{expr}: C says {got}, Rust says {want}");
    }
}
