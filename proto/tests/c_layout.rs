//! Proves that `include/vfpga_abi.h` and the Rust structures agree: every structure's
//! size, every field's offset and size, and every constant, as the machine's C compiler
//! sees them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use vfpga_proto::*;

/// `(field, offset, size)` rows, as `wire_struct!` records them.
type Fields = &'static [(&'static str, usize, usize)];

/// `(C struct name, size, fields)` for every ABI structure.
fn structures() -> Vec<(&'static str, usize, Fields)> {
    macro_rules! s {
        ($($t:ty),*) => { vec![$((<$t>::C_NAME, <$t>::SIZE, <$t>::FIELDS)),*] };
    }
    s!(
        DeviceConfig,
        RequestHeader,
        ArgEntry,
        Response,
        DeviceInfo,
        ArgDesc,
        KernelDesc,
        Stats,
        Limits
    )
}

/// Every named constant, with the value Rust gives it.
fn constants() -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&str, u64)> = C_CONSTANTS.to_vec();
    v.extend(Opcode::ALL.iter().map(|(c, n)| (*n, u64::from(c.raw()))));
    v.extend(Status::ALL.iter().map(|(c, n)| (*n, u64::from(c.raw()))));
    v.extend(ArgKind::ALL.iter().map(|(c, n)| (*n, u64::from(c.raw()))));
    v.extend(ElemType::ALL.iter().map(|(c, n)| (*n, u64::from(c.raw()))));
    v
}

/// A C program that prints what the compiler makes of each struct, field and constant,
/// one `key value` line each, in the same format as [`expected`].
fn c_program() -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"vfpga_abi.h\"\nint main(void)\n{\n",
    );
    for (name, _, fields) in structures() {
        let _ = writeln!(
            c,
            "\tprintf(\"{name} size %zu\\n\", sizeof(struct {name}));"
        );
        for (f, _, _) in fields {
            let _ = writeln!(
                c,
                "\tprintf(\"{name}.{f} %zu %zu\\n\", offsetof(struct {name}, {f}), sizeof(((struct {name} *)0)->{f}));"
            );
        }
    }
    for (n, _) in constants() {
        let _ = writeln!(c, "\tprintf(\"{n} %llu\\n\", (unsigned long long)({n}));");
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

fn expected() -> String {
    let mut s = String::new();
    for (name, size, fields) in structures() {
        let _ = writeln!(s, "{name} size {size}");
        for (f, off, sz) in fields {
            let _ = writeln!(s, "{name}.{f} {off} {sz}");
        }
    }
    for (n, v) in constants() {
        let _ = writeln!(s, "{n} {v}");
    }
    s
}

#[test]
fn c_header_matches_rust_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(&src, c_program()).expect("write C source");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Werror", "-Wpadded", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "the C header does not compile cleanly");
    let out = Command::new(&exe).output().expect("run layout program");
    assert!(out.status.success());
    let got = String::from_utf8(out.stdout).expect("utf-8");
    let want = expected();
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(g, w, "C (left) and Rust (right) disagree");
    }
    assert_eq!(got.lines().count(), want.lines().count());
}
