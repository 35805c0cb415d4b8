//! Drives a `vfpgad` socket like a guest would, without a VM: prints the device's info
//! and kernel catalogue, runs every built-in kernel on sample data and checks each
//! result against a reference computed here.
//!
//! Usage: `vfpga-vhu-demo SOCKET`
//!
//! `vfpga-vhu-demo --hold SOCKET` keeps one session open instead, for tests of what
//! happens to sessions from the outside (the Xen dom0 test destroys the guest's
//! domain): it opens a `vadd_u32` session, runs it once, prints
//! `HOLD-READY session=ID`, waits for a line on standard input (or its end), runs the
//! same session again and prints `HOLD-RESULT STATUS` (`OK`, `BAD_SESSION`, ...).

#![allow(clippy::cast_possible_truncation)]

use std::process::ExitCode;

use vfpga_proto::{wire::name_str, DeviceInfo, ElemType, KernelDesc, KernelSig, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Error, Layout, VhuFrontend};

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Demo {
    fe: VhuFrontend,
    failures: usize,
}

impl Demo {
    fn run(&mut self, kernel: &str, args: &[Arg<'_>], want: &[u8]) -> Result<(), Error> {
        let open = self.fe.call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, kernel.as_bytes())],
            Layout::Direct,
        )?;
        if open.status() != Some(Status::Ok) {
            println!(
                "  {kernel:<9} FAIL cannot open a session: {} (not in the device's catalogue, or not allowed this guest)",
                status_name(open.status())
            );
            self.failures += 1;
            return Ok(());
        }
        let r = self
            .fe
            .call(1, Opcode::Run, open.resp.value, args, Layout::Paged(4096))?;
        let answered = r.status() == Some(Status::Ok);
        let ok = answered && r.outputs.first().map(Vec::as_slice) == Some(want);
        let shown: Vec<String> = r.outputs.first().map_or(vec![], |o| {
            o.iter().take(12).map(|b| format!("{b:02x}")).collect()
        });
        if answered {
            println!(
                "  {kernel:<9} {:<4} {:>8} ns  out[..12] = {}",
                if ok { "ok" } else { "FAIL wrong result:" },
                r.resp.duration_ns,
                shown.join(" ")
            );
        } else {
            println!(
                "  {kernel:<9} FAIL the device answered {} (detail {})",
                status_name(r.status()),
                r.resp.detail
            );
        }
        if !ok {
            self.failures += 1;
        }
        self.fe.call(
            0,
            Opcode::CloseSession,
            open.resp.value,
            &[],
            Layout::Direct,
        )?;
        Ok(())
    }
}

fn demo(socket: &str) -> Result<usize, Error> {
    let mut fe = VhuFrontend::connect(socket.as_ref(), Default::default())?;
    let cfg = fe.config()?;
    let r = fe.call(
        0,
        Opcode::GetInfo,
        0,
        &[Arg::Out(ElemType::U8, DeviceInfo::SIZE)],
        Layout::Direct,
    )?;
    let info = DeviceInfo::from_bytes(
        r.outputs[0]
            .as_slice()
            .try_into()
            .map_err(|_| Error::Protocol("info size"))?,
    );
    println!(
        "device {}: engine {}, bitstream {}, ABI v{}, {} request queue{}, {} kernel{}",
        name_str(&info.device_name).unwrap_or("?"),
        name_str(&info.engine).unwrap_or("?"),
        name_str(&info.bitstream).unwrap_or("?"),
        cfg.abi_version,
        cfg.num_request_queues,
        if cfg.num_request_queues == 1 { "" } else { "s" },
        info.num_kernels,
        if info.num_kernels == 1 { "" } else { "s" }
    );
    let r = fe.call(
        0,
        Opcode::ListKernels,
        0,
        &[
            Arg::Scalar(ElemType::U32, 0),
            Arg::Out(ElemType::U8, 16 * KernelDesc::SIZE),
        ],
        Layout::Direct,
    )?;
    for rec in r.outputs[0][..r.resp.written as usize].chunks(KernelDesc::SIZE) {
        let d = KernelDesc::from_bytes(rec.try_into().map_err(|_| Error::Protocol("record size"))?);
        match KernelSig::from_desc(&d) {
            Ok(sig) => println!("  {}\n      {}", sig.render(), sig.doc),
            Err(e) => println!("  (unreadable descriptor: {e})"),
        }
    }
    println!("runs (inputs in 4 KiB guest pages, checked against references computed here):");
    let mut d = Demo { fe, failures: 0 };
    let n = 4096u32;
    let a: Vec<u32> = (0..n).map(|i| i.wrapping_mul(2_654_435_761)).collect();
    let b: Vec<u32> = (0..n).map(|i| i ^ 0xdead_beef).collect();
    let sum: Vec<u32> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
    d.run(
        "vadd_u32",
        &[
            Arg::In(ElemType::U32, &u32s(&a)),
            Arg::In(ElemType::U32, &u32s(&b)),
            Arg::Out(ElemType::U32, 4 * n as usize),
            Arg::Scalar(ElemType::U32, n.into()),
        ],
        &u32s(&sum),
    )?;
    let fa: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    let fsum: Vec<f32> = fa.iter().map(|x| x + 1.5).collect();
    d.run(
        "vadd_f32",
        &[
            Arg::In(ElemType::F32, &f32s(&fa)),
            Arg::In(ElemType::F32, &f32s(&vec![1.5; n as usize])),
            Arg::Out(ElemType::F32, 4 * n as usize),
            Arg::Scalar(ElemType::U32, n.into()),
        ],
        &f32s(&fsum),
    )?;
    let (m, k, nn) = (8usize, 5usize, 6usize);
    let ma: Vec<f32> = (0..m * k).map(|i| i as f32 - 7.0).collect();
    let mb: Vec<f32> = (0..k * nn).map(|i| (i % 7) as f32 * 0.5).collect();
    let mut mc = vec![0f32; m * nn];
    for i in 0..m {
        for j in 0..nn {
            mc[i * nn + j] = (0..k).fold(0.0, |acc, p| acc + ma[i * k + p] * mb[p * nn + j]);
        }
    }
    d.run(
        "mmult",
        &[
            Arg::In(ElemType::F32, &f32s(&ma)),
            Arg::In(ElemType::F32, &f32s(&mb)),
            Arg::Out(ElemType::F32, m * nn * 4),
            Arg::Scalar(ElemType::U32, m as u64),
            Arg::Scalar(ElemType::U32, k as u64),
            Arg::Scalar(ElemType::U32, nn as u64),
        ],
        &f32s(&mc),
    )?;
    let x: Vec<i16> = (0..1000).map(|i| ((i * 37) % 200 - 100) as i16).collect();
    let taps = [3i32, -1, 4, 1, -5];
    let y: Vec<i32> = (0..x.len())
        .map(|i| {
            (0..taps.len()).filter(|&j| j <= i).fold(0i32, |acc, j| {
                acc.wrapping_add(taps[j].wrapping_mul(i32::from(x[i - j])))
            })
        })
        .collect();
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tb: Vec<u8> = taps.iter().flat_map(|v| v.to_le_bytes()).collect();
    let yb: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    d.run(
        "fir",
        &[
            Arg::In(ElemType::I16, &xb),
            Arg::In(ElemType::I32, &tb),
            Arg::Out(ElemType::I32, yb.len()),
            Arg::Scalar(ElemType::U32, x.len() as u64),
            Arg::Scalar(ElemType::U32, taps.len() as u64),
        ],
        &yb,
    )?;
    // SHA-256("abc"), FIPS 180-4 appendix example.
    let abc = [
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22,
        0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00,
        0x15, 0xad,
    ];
    d.run(
        "sha256",
        &[
            Arg::In(ElemType::U8, b"abc"),
            Arg::Out(ElemType::U8, 32),
            Arg::Scalar(ElemType::U64, 3),
        ],
        &abc,
    )?;
    let (w, h) = (5usize, 4usize);
    let img: Vec<u8> = (0..w * h)
        .map(|i| if i % w >= 2 { 200 } else { 0 })
        .collect();
    // Vertical edge between columns 1 and 2: |gx| = 800 → 255 on interior pixels beside it.
    let mut edge = vec![0u8; w * h];
    for y in 1..h - 1 {
        edge[y * w + 1] = 255;
        edge[y * w + 2] = 255;
    }
    d.run(
        "sobel",
        &[
            Arg::In(ElemType::U8, &img),
            Arg::Out(ElemType::U8, w * h),
            Arg::Scalar(ElemType::U32, w as u64),
            Arg::Scalar(ElemType::U32, h as u64),
        ],
        &edge,
    )?;
    let nop = d.fe.call(1, Opcode::Nop, 0, &[], Layout::Direct)?;
    println!("null op: {:?}", nop.status().unwrap_or(Status::EngineError));
    Ok(d.failures)
}

/// The ABI name of a status without its prefix, e.g. `BAD_SESSION`.
fn status_name(s: Option<Status>) -> &'static str {
    s.and_then(|s| Status::ALL.iter().find(|(v, _)| *v == s))
        .map_or("UNKNOWN", |(_, n)| n.trim_start_matches("VFPGA_S_"))
}

fn hold(socket: &str) -> Result<(), Error> {
    let mut fe = VhuFrontend::connect(socket.as_ref(), Default::default())?;
    let open = fe.call(
        0,
        Opcode::OpenSession,
        0,
        &[Arg::In(ElemType::U8, b"vadd_u32")],
        Layout::Direct,
    )?;
    if open.status() != Some(Status::Ok) {
        println!("HOLD-RESULT {}", status_name(open.status()));
        return Ok(());
    }
    let session = open.resp.value;
    let a = u32s(&[1, 2, 3, 4]);
    let b = u32s(&[10, 20, 30, 40]);
    let args = [
        Arg::In(ElemType::U32, &a),
        Arg::In(ElemType::U32, &b),
        Arg::Out(ElemType::U32, 16),
        Arg::Scalar(ElemType::U32, 4),
    ];
    let first = fe.call(1, Opcode::Run, session, &args, Layout::Direct)?;
    if first.status() != Some(Status::Ok) || first.outputs[0] != u32s(&[11, 22, 33, 44]) {
        println!("HOLD-RESULT first run: {}", status_name(first.status()));
        return Ok(());
    }
    println!("HOLD-READY session={session}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let again = fe.call(1, Opcode::Run, session, &args, Layout::Direct)?;
    println!("HOLD-RESULT {}", status_name(again.status()));
    Ok(())
}

fn main() -> ExitCode {
    // Like any Unix filter: a reader that goes away (`| head`) ends us quietly, where
    // Rust's default would panic in println!.
    // SAFETY: restoring a signal's default action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (hold_mode, socket) = match args.as_slice() {
        [h] if h == "-h" || h == "--help" => {
            // The module documentation is the help text.
            println!(
                "usage: vfpga-vhu-demo [--hold] SOCKET\n\n\
                 Drives a vfpgad socket like a guest would, without a VM: prints the device's\n\
                 info and kernels, runs every built-in kernel on sample data and checks each\n\
                 result against a reference computed here.\n\n\
                 --hold  open a vadd_u32 session, run it, print `HOLD-READY session=ID`, wait\n\
                 \x20       for a line on stdin, run it again and print `HOLD-RESULT STATUS`"
            );
            return ExitCode::SUCCESS;
        }
        [s] if s != "--hold" => (false, s),
        [h, s] if h == "--hold" => (true, s),
        _ => {
            eprintln!("usage: vfpga-vhu-demo [--hold] SOCKET");
            return ExitCode::from(2);
        }
    };
    if hold_mode {
        return match hold(socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vfpga-vhu-demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match demo(socket) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!(
                "vfpga-vhu-demo: {n} of the built-in kernels failed (the FAIL lines say how)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("vfpga-vhu-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
