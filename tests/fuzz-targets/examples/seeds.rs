//! Writes the seed inputs of the fuzz corpora (`fuzz/corpus/<target>/seed-*`): a few
//! well-formed requests and chains for the fuzzers to mutate from, and the project's own
//! example files. `cargo run -p vfpga-fuzz-targets --example seeds`; the fuzzers add what
//! they find.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::Path;

use vfpga_fuzz_targets::SESSION_MARK;
use vfpga_proto::stream::write_request;
use vfpga_proto::{ArgEntry, ElemType, Opcode, RequestHeader};

fn request(
    out: &mut Vec<u8>,
    op: Opcode,
    tag: u64,
    session: u64,
    args: &[ArgEntry],
    inputs: &[u8],
) {
    write_request(out, &RequestHeader::new(op, tag, session, args.len()), args).unwrap();
    out.extend_from_slice(inputs);
}

/// A request whose session field is the mark standing for the last opened session.
fn run_marked(out: &mut Vec<u8>, args: &[ArgEntry], inputs: &[u8]) {
    let start = out.len();
    request(out, Opcode::Run, 9, 0, args, inputs);
    // The header's session field: after magic, version, opcode, flags, n_args and tag.
    let at = start + 24;
    out[at..at + 8].copy_from_slice(&SESSION_MARK);
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    // stream: control operations, then a session and a run of each kind of kernel.
    let mut s = Vec::new();
    request(&mut s, Opcode::Nop, 1, 0, &[], &[]);
    request(
        &mut s,
        Opcode::GetInfo,
        2,
        0,
        &[ArgEntry::output(ElemType::U8, 160)],
        &[],
    );
    request(
        &mut s,
        Opcode::ListKernels,
        3,
        0,
        &[
            ArgEntry::scalar(ElemType::U32, 0),
            ArgEntry::output(ElemType::U8, 2320),
        ],
        &[],
    );
    put("stream", "control", &s);
    let mut s = Vec::new();
    request(
        &mut s,
        Opcode::OpenSession,
        4,
        0,
        &[ArgEntry::input(ElemType::U8, 8)],
        b"vadd_u32",
    );
    let v: Vec<u8> = (0..64u8).collect();
    run_marked(
        &mut s,
        &[
            ArgEntry::input(ElemType::U32, 64),
            ArgEntry::input(ElemType::U32, 64),
            ArgEntry::output(ElemType::U32, 64),
            ArgEntry::scalar(ElemType::U32, 16),
        ],
        &[v.clone(), v.clone()].concat(),
    );
    request(
        &mut s,
        Opcode::GetStats,
        5,
        0,
        &[ArgEntry::output(ElemType::U8, 64)],
        &[],
    );
    put("stream", "vadd", &s);
    let mut s = Vec::new();
    request(
        &mut s,
        Opcode::OpenSession,
        6,
        0,
        &[ArgEntry::input(ElemType::U8, 6)],
        b"sha256",
    );
    run_marked(
        &mut s,
        &[
            ArgEntry::input(ElemType::U8, 100),
            ArgEntry::output(ElemType::U8, 32),
            ArgEntry::scalar(ElemType::U64, 100),
        ],
        &[7u8; 100],
    );
    put("stream", "sha256", &s);
    let mut s = Vec::new();
    request(
        &mut s,
        Opcode::OpenSession,
        7,
        0,
        &[ArgEntry::input(ElemType::U8, 5)],
        b"mmult",
    );
    let m = [0u8; 4 * 4 * 4];
    run_marked(
        &mut s,
        &[
            ArgEntry::input(ElemType::F32, 64),
            ArgEntry::input(ElemType::F32, 64),
            ArgEntry::output(ElemType::F32, 64),
            ArgEntry::scalar(ElemType::U32, 4),
            ArgEntry::scalar(ElemType::U32, 4),
            ArgEntry::scalar(ElemType::U32, 4),
        ],
        &[m, m].concat(),
    );
    put("stream", "mmult", &s);
    // chain: head 0, three descriptors (header, input, response) over the data area.
    let data = 0x4000u64;
    let mut hdr = Vec::new();
    write_request(&mut hdr, &RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]).unwrap();
    let mut c = vec![0, 0, 1];
    let desc = |addr: u64, len: u32, flags: u16, next: u16| {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        d
    };
    c.extend(desc(data, hdr.len() as u32, 1, 1));
    c.extend(desc(data + 0x1000, 40, 2, 0));
    c.extend(&hdr);
    put("chain", "nop", &c);
    let mut hdr = Vec::new();
    let args = [ArgEntry::output(ElemType::U8, 160)];
    write_request(
        &mut hdr,
        &RequestHeader::new(Opcode::GetInfo, 2, 0, 1),
        &args,
    )
    .unwrap();
    let mut c = vec![0, 0, 2];
    c.extend(desc(data, hdr.len() as u32, 1, 1));
    c.extend(desc(data + 0x1000, 160, 3, 2));
    c.extend(desc(data + 0x2000, 40, 2, 0));
    c.extend(&hdr);
    put("chain", "info", &c);
    // Files of the project's own.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let copy = |target: &str, name: &str, file: &str| {
        put(target, name, &std::fs::read(repo.join(file)).unwrap());
    };
    copy("manifest", "builtin", "backend/engine/src/sim/builtin.toml");
    copy("config", "packaging", "packaging/vfpgad.toml");
    let doc = |file: &str, lang: &str, nth: usize| -> Vec<u8> {
        let text = std::fs::read_to_string(repo.join(file)).unwrap();
        let block = text.split(&format!("```{lang}")).nth(nth).unwrap();
        let body = block.split_once('\n').unwrap().1;
        body.split_once("```").unwrap().0.as_bytes().to_vec()
    };
    put("manifest", "remote-md", &doc("docs/remote.md", "toml", 1));
    put("config", "tenants-md", &doc("docs/tenants.md", "toml", 1));
    put(
        "config",
        "transports-md",
        &doc("docs/transports.md", "toml", 1),
    );
    put("config", "remote-md", &doc("docs/remote.md", "toml", 3));
    put("xen_guest", "xen-md", &doc("docs/xen.md", "toml", 2));
    let example = std::process::Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "vfpga-pxe", "--", "example"])
        .output()
        .unwrap();
    put("pxe", "example", &example.stdout);
}
