//! Malformed requests: each gets an error status (or its chain back with 0 bytes
//! written), and the daemon then still serves a valid request on the same connection.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::{open, still_serves, Daemon};
use vfpga_proto::*;
use vfpga_vhu_frontend::{write_desc, Arg, Layout, Seg, VhuFrontend, F_INDIRECT, F_NEXT, F_WRITE};
use vm_memory::GuestAddress;

/// Writes `hdr` and `args` to guest memory; returns where and how long.
fn head(fe: &mut VhuFrontend, hdr: RequestHeader, args: &[ArgEntry]) -> (GuestAddress, u32) {
    let mut blob = hdr.to_bytes().to_vec();
    for a in args {
        blob.extend_from_slice(&a.to_bytes());
    }
    let at = fe.mem.alloc(blob.len() as u64, 64).unwrap();
    fe.mem.write(at, &blob).unwrap();
    (at, blob.len() as u32)
}

/// A response slot pre-filled with a pattern the device must overwrite.
fn resp_slot(fe: &mut VhuFrontend) -> GuestAddress {
    let at = fe.mem.alloc(Response::SIZE as u64, 8).unwrap();
    fe.mem.write(at, &[0xee; Response::SIZE]).unwrap();
    at
}

fn read_resp(fe: &VhuFrontend, at: GuestAddress) -> Response {
    let mut raw = [0u8; Response::SIZE];
    fe.mem.read(at, &mut raw).unwrap();
    Response::from_bytes(&raw)
}

/// Submits `segs` directly on `q`; returns the used length and the response at `resp`.
fn submit(fe: &mut VhuFrontend, q: usize, segs: &[Seg], resp: GuestAddress) -> (u32, Response) {
    let used = fe.chain(q, segs).unwrap();
    (used, read_resp(fe, resp))
}

/// A header-only request with opcode `op` as one chain; returns its status.
fn status_of(
    fe: &mut VhuFrontend,
    q: usize,
    hdr: RequestHeader,
    args: &[ArgEntry],
) -> (u32, Response) {
    let mark = fe.mem.mark();
    let (h, n) = head(fe, hdr, args);
    let r = resp_slot(fe);
    let out = submit(fe, q, &[Seg::rd(h, n), Seg::wr(r, 40)], r);
    fe.mem.release_to(mark);
    out
}

fn setup() -> (Daemon, VhuFrontend) {
    let d = Daemon::start(2, &[]);
    let fe = d.connect(0);
    (d, fe)
}

#[test]
fn readable_address_outside_guest_memory() {
    let (_d, mut fe) = setup();
    let s = open(&mut fe, "sha256");
    let args = [
        ArgEntry::input(ElemType::U8, 64),
        ArgEntry::output(ElemType::U8, 32),
        ArgEntry::scalar(ElemType::U64, 64),
    ];
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Run, 9, s, 3), &args);
    let out = fe.mem.alloc(32, 8).unwrap();
    let r = resp_slot(&mut fe);
    let beyond = GuestAddress(fe.mem.size() + 0x10000);
    let (used, resp) = submit(
        &mut fe,
        1,
        &[
            Seg::rd(h, n),
            Seg::rd(beyond, 64),
            Seg::wr(out, 32),
            Seg::wr(r, 40),
        ],
        r,
    );
    assert_eq!((used, resp.status()), (40, Some(Status::BadRequest)));
    assert_eq!(
        resp.tag, 0,
        "header not trusted when the chain is refused early"
    );
    still_serves(&mut fe);
}

#[test]
fn response_outside_guest_memory_returns_chain_empty() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let beyond = GuestAddress(fe.mem.size() - 8);
    assert_eq!(
        fe.chain(1, &[Seg::rd(h, n), Seg::wr(beyond, 40)]).unwrap(),
        0
    );
    still_serves(&mut fe);
}

#[test]
fn a_flood_of_bad_chains_is_one_log_line_with_a_count() {
    let (d, mut fe) = setup();
    let start = std::time::Instant::now();
    for _ in 0..300 {
        let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
        let beyond = GuestAddress(fe.mem.size() - 8);
        assert_eq!(
            fe.chain(1, &[Seg::rd(h, n), Seg::wr(beyond, 40)]).unwrap(),
            0
        );
    }
    still_serves(&mut fe);
    // One report per ten seconds at most: the first, and one more per ten seconds the
    // flood took on a slow machine.
    let allowed = 1 + start.elapsed().as_secs() / 10;
    let log = d.log();
    let lines = log.matches("returning chain").count() as u64;
    assert!(
        (1..=allowed).contains(&lines),
        "{lines} lines (allowed {allowed}):\n{log}"
    );
}

#[test]
fn wrapping_addresses_and_lengths() {
    let (_d, mut fe) = setup();
    // A descriptor whose address + length wraps around 2^64.
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    let (used, resp) = submit(
        &mut fe,
        1,
        &[
            Seg::rd(h, n),
            Seg::rd(GuestAddress(u64::MAX - 15), 64),
            Seg::wr(r, 40),
        ],
        r,
    );
    assert_eq!((used, resp.status()), (40, Some(Status::BadRequest)));
    // Argument lengths whose sum wraps.
    let s = open(&mut fe, "sha256");
    let args = [
        ArgEntry::input(ElemType::U8, u64::MAX),
        ArgEntry::input(ElemType::U8, 2),
        ArgEntry::scalar(ElemType::U64, 1),
    ];
    let (used, resp) = status_of(&mut fe, 1, RequestHeader::new(Opcode::Run, 5, s, 3), &args);
    assert_eq!(
        (used, resp.status(), resp.tag),
        (40, Some(Status::TooLarge), 5)
    );
    // A length that does not wrap but names more bytes than the chain has.
    let args = [
        ArgEntry::input(ElemType::U8, 1 << 40),
        ArgEntry::output(ElemType::U8, 32),
        ArgEntry::scalar(ElemType::U64, 1 << 40),
    ];
    let (_, resp) = status_of(&mut fe, 1, RequestHeader::new(Opcode::Run, 6, s, 3), &args);
    assert_eq!(resp.status(), Some(Status::BadRequest));
    still_serves(&mut fe);
}

#[test]
fn readable_and_writable_flags_swapped() {
    let (_d, mut fe) = setup();
    // Header in a device-writable descriptor, response in a device-readable one.
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    let used = fe.chain(1, &[Seg::wr(h, n), Seg::rd(r, 40)]).unwrap();
    if used != 0 {
        // Answered in the last writable bytes there are: the header buffer.
        let resp = read_resp(&fe, GuestAddress(h.0 + u64::from(n) - 40));
        assert_eq!(resp.status(), Some(Status::BadRequest));
    }
    assert_eq!(
        read_resp(&fe, r).status,
        0xeeee,
        "a readable buffer was written"
    );
    // Everything readable: nowhere to answer.
    assert_eq!(fe.chain(1, &[Seg::rd(h, n), Seg::rd(r, 40)]).unwrap(), 0);
    // Everything writable: no header to read.
    let (used, resp) = submit(&mut fe, 1, &[Seg::wr(h, n), Seg::wr(r, 40)], r);
    assert_eq!((used, resp.status()), (40, Some(Status::BadRequest)));
    still_serves(&mut fe);
}

#[test]
fn too_many_segments() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    let mut segs = vec![Seg::rd(h, n)];
    segs.extend(std::iter::repeat_n(Seg::rd(h, 1), 16400));
    segs.push(Seg::wr(r, 40));
    let used = fe.chain_indirect(1, &segs).unwrap();
    let resp = read_resp(&fe, r);
    assert_eq!((used, resp.status()), (40, Some(Status::TooLarge)));
    still_serves(&mut fe);
}

#[test]
fn oversized_request() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let big = fe.mem.alloc(1 << 20, 4096).unwrap();
    let r = resp_slot(&mut fe);
    let mut segs = vec![Seg::rd(h, n)];
    segs.extend(std::iter::repeat_n(Seg::rd(big, 1 << 20), 70));
    segs.push(Seg::wr(r, 40));
    let used = fe.chain_indirect(1, &segs).unwrap();
    assert_eq!(
        (used, read_resp(&fe, r).status()),
        (40, Some(Status::TooLarge))
    );
    still_serves(&mut fe);
}

#[test]
fn header_fields_checked() {
    let (_d, mut fe) = setup();
    let ok = RequestHeader::new(Opcode::Nop, 77, 0, 0);
    type Mutation = fn(&mut RequestHeader);
    let cases: [(Mutation, Status); 6] = [
        (|h| h.opcode = 0x99, Status::Unsupported),
        (|h| h.version = 7, Status::BadVersion),
        (|h| h.magic = 0, Status::BadRequest),
        (|h| h.flags = 4, Status::BadRequest),
        (|h| h.reserved[0] = 1, Status::BadRequest),
        (|h| h.n_args = 200, Status::TooLarge),
    ];
    for (mutate, want) in cases {
        let mut h = ok;
        mutate(&mut h);
        let (used, resp) = status_of(&mut fe, 1, h, &[]);
        assert_eq!((used, resp.status()), (40, Some(want)), "{h:?}");
        assert_eq!(resp.tag, 77);
    }
    // Argument table longer than the readable bytes.
    let mut h = ok;
    h.n_args = 3;
    let (_, resp) = status_of(&mut fe, 1, h, &[]);
    assert_eq!(resp.status(), Some(Status::BadRequest));
    // Unknown argument kind, and a scalar with bits above its type.
    let mut bad = ArgEntry::scalar(ElemType::U32, 1);
    bad.kind = 9;
    let (_, resp) = status_of(
        &mut fe,
        0,
        RequestHeader::new(Opcode::ListKernels, 1, 0, 1),
        &[bad],
    );
    assert_eq!((resp.status(), resp.detail), (Some(Status::BadRequest), 0));
    let wide = ArgEntry::scalar(ElemType::U32, 1 << 40);
    let (_, resp) = status_of(
        &mut fe,
        0,
        RequestHeader::new(Opcode::ListKernels, 1, 0, 1),
        &[wide],
    );
    assert_eq!((resp.status(), resp.detail), (Some(Status::BadArgument), 0));
    still_serves(&mut fe);
}

#[test]
fn bad_and_foreign_sessions() {
    let (d, mut fe) = setup();
    let mut other = d.connect(1);
    let s = open(&mut fe, "vadd_u32");
    let theirs = open(&mut other, "vadd_u32");
    let a = [0u8; 8];
    let args = |_: ()| {
        [
            Arg::In(ElemType::U32, &a),
            Arg::In(ElemType::U32, &a),
            Arg::Out(ElemType::U32, 8),
            Arg::Scalar(ElemType::U32, 2),
        ]
    };
    for (session, why) in [
        (0, "no session"),
        (12345, "never opened"),
        (theirs, "another guest's"),
        (s ^ 1 << 16, "stale generation"),
    ] {
        let r = fe
            .call(1, Opcode::Run, session, &args(()), Layout::Direct)
            .unwrap();
        assert_eq!(r.status(), Some(Status::BadSession), "{why}");
    }
    fe.call(0, Opcode::CloseSession, s, &[], Layout::Direct)
        .unwrap();
    let r = fe
        .call(1, Opcode::Run, s, &args(()), Layout::Direct)
        .unwrap();
    assert_eq!(r.status(), Some(Status::BadSession), "closed");
    let r = other
        .call(1, Opcode::Run, theirs, &args(()), Layout::Direct)
        .unwrap();
    assert_eq!(r.status(), Some(Status::Ok), "the owner still runs it");
    still_serves(&mut fe);
}

#[test]
fn arguments_that_do_not_match_the_signature() {
    let (_d, mut fe) = setup();
    let s = open(&mut fe, "vadd_u32");
    let (a, b) = ([0u8; 16], [0u8; 12]);
    let r = fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U32, &a),
                Arg::In(ElemType::U32, &b),
                Arg::Out(ElemType::U32, 16),
                Arg::Scalar(ElemType::U32, 4),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!((r.status(), r.resp.detail), (Some(Status::BadArgument), 1));
    let r = fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::F32, &a),
                Arg::In(ElemType::U32, &a),
                Arg::Out(ElemType::U32, 16),
                Arg::Scalar(ElemType::U32, 4),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!((r.status(), r.resp.detail), (Some(Status::BadArgument), 0));
    let r = fe
        .call(
            1,
            Opcode::Run,
            s,
            &[Arg::Scalar(ElemType::U32, 4)],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::BadArgument));
    let f = open(&mut fe, "fir");
    let x = [0u8; 2];
    let taps = vec![0u8; 300 * 4];
    let r = fe
        .call(
            1,
            Opcode::Run,
            f,
            &[
                Arg::In(ElemType::I16, &x),
                Arg::In(ElemType::I32, &taps),
                Arg::Out(ElemType::I32, 4),
                Arg::Scalar(ElemType::U32, 1),
                Arg::Scalar(ElemType::U32, 300),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(
        (r.status(), r.resp.detail),
        (Some(Status::BadArgument), 4),
        "engine-level limit"
    );
    still_serves(&mut fe);
}

#[test]
fn operations_on_the_wrong_queue() {
    let (_d, mut fe) = setup();
    let s = open(&mut fe, "sha256");
    let r = fe
        .call(
            0,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U8, b"x"),
                Arg::Out(ElemType::U8, 32),
                Arg::Scalar(ElemType::U64, 1),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::BadRequest));
    let r = fe
        .call(
            1,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"sha256")],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::BadRequest));
    let r = fe
        .call(
            0,
            Opcode::GetInfo,
            0,
            &[Arg::Out(ElemType::U8, 8)],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::BadArgument), "answer does not fit");
    still_serves(&mut fe);
}

#[test]
fn response_area_too_small() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    assert_eq!(fe.chain(1, &[Seg::rd(h, n), Seg::wr(r, 39)]).unwrap(), 0);
    assert_eq!(read_resp(&fe, r).status, 0xeeee);
    still_serves(&mut fe);
}

#[test]
fn descriptor_loops() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    // Direct: d0 -> d1 -> d0 -> ...
    let q = &mut fe.queues[1];
    let (d0, d1) = (q.take_desc().unwrap(), q.take_desc().unwrap());
    q.set_desc(&fe.mem, d0, h.0, n, F_NEXT, d1).unwrap();
    q.set_desc(&fe.mem, d1, r.0, 40, F_WRITE | F_NEXT, d0)
        .unwrap();
    let used = fe.submit_and_wait(1, d0).unwrap();
    assert!(used == 0 || read_resp(&fe, r).status() == Some(Status::BadRequest));
    // Inside an indirect table: entry 1 points back to entry 0.
    let table = fe.mem.alloc(32, 16).unwrap();
    write_desc(&fe.mem, table, h.0, n, F_NEXT, 1).unwrap();
    write_desc(
        &fe.mem,
        GuestAddress(table.0 + 16),
        r.0,
        40,
        F_WRITE | F_NEXT,
        0,
    )
    .unwrap();
    let head = fe.queues[1].add_indirect(&fe.mem, table, 2).unwrap();
    let used = fe.submit_and_wait(1, head).unwrap();
    assert!(used == 0 || read_resp(&fe, r).status() == Some(Status::BadRequest));
    still_serves(&mut fe);
}

#[test]
fn indirect_table_abuse() {
    let (_d, mut fe) = setup();
    let (h, n) = head(&mut fe, RequestHeader::new(Opcode::Nop, 1, 0, 0), &[]);
    let r = resp_slot(&mut fe);
    let size = fe.mem.size();
    // Table length not a multiple of 16, zero-length table, table outside memory.
    let table = fe.mem.alloc(64, 16).unwrap();
    write_desc(&fe.mem, table, h.0, n, F_NEXT, 1).unwrap();
    write_desc(&fe.mem, GuestAddress(table.0 + 16), r.0, 40, F_WRITE, 0).unwrap();
    for (addr, len) in [
        (table.0, 24),
        (table.0, 0),
        (size + 4096, 32),
        (u64::MAX - 8, 32),
    ] {
        let q = &mut fe.queues[1];
        let d = q.take_desc().unwrap();
        q.set_desc(&fe.mem, d, addr, len, F_INDIRECT, 0).unwrap();
        assert_eq!(
            fe.submit_and_wait(1, d).unwrap(),
            0,
            "table {addr:#x}+{len}"
        );
    }
    // A nested indirect descriptor inside the table.
    write_desc(
        &fe.mem,
        GuestAddress(table.0 + 16),
        table.0,
        32,
        F_INDIRECT | F_NEXT,
        2,
    )
    .unwrap();
    write_desc(&fe.mem, GuestAddress(table.0 + 32), r.0, 40, F_WRITE, 0).unwrap();
    let head = fe.queues[1].add_indirect(&fe.mem, table, 3).unwrap();
    let used = fe.submit_and_wait(1, head).unwrap();
    assert!(used == 0 || read_resp(&fe, r).status() == Some(Status::BadRequest));
    // An indirect descriptor after direct ones in the same chain.
    write_desc(&fe.mem, GuestAddress(table.0 + 16), r.0, 40, F_WRITE, 0).unwrap();
    let q = &mut fe.queues[1];
    let (d0, d1) = (q.take_desc().unwrap(), q.take_desc().unwrap());
    q.set_desc(&fe.mem, d0, h.0, n, F_NEXT, d1).unwrap();
    q.set_desc(&fe.mem, d1, table.0, 32, F_INDIRECT, 0).unwrap();
    let used = fe.submit_and_wait(1, d0).unwrap();
    assert!(used == 0 || used == 40);
    still_serves(&mut fe);
}

#[test]
fn head_index_beyond_the_queue() {
    let (_d, mut fe) = setup();
    let size = fe.queues[1].size();
    // Cannot be returned: the device must skip it and keep going.
    fe.queues[1].publish(&fe.mem, size + 3).unwrap();
    still_serves(&mut fe);
}
