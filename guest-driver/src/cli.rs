//! The `vfpga` command line: its flags and subcommands, their help, and the parsers of
//! their values. The `vfpga` binary parses it; the packaging's generator
//! (packaging/docgen) writes the man page and shell completions from the same
//! definition.
// The comments on flags are their --help text, where brackets (`[NAME=]VALUE`,
// `HOST[:PORT]`) are syntax, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vfpga_proto::ElemType;

use crate::{DEFAULT_DEVICE, DEVICE_ENV};

/// What `--help` shows after the options: examples and where to read more.
pub const AFTER_HELP: &str = "\
Examples:
  vfpga info
  vfpga kernels
  vfpga run vadd_u32 --in a.bin --in b.bin --out c.bin        (n inferred from a.bin)
  vfpga run mmult --arg m=64 --arg k=32 --arg n=16 --in a=A.bin --in b=B.bin --out c=C.bin
  vfpga run sha256 --in data.bin                             (digest printed in hex)
  vfpga bench --size 16M

Without the virtio_vfpga kernel module, reach vfpgad on a stream instead:
  vfpga --device vsock://2:7000 kernels             (vsock to the host, CID 2)
  vfpga --device unix:/run/vfpga/vm0.vsock_7000 info (on the host itself)
  vfpga --device tls://10.0.0.1:7000 --tls-dir /etc/vfpga/guest info
  VFPGA_DEVICE=vchan:// vfpga info                   (a Xen domU, to vfpgad in dom0)

Buffers are raw little-endian element arrays, exactly as long as the kernel's
signature says (`vfpga kernels` shows it). Exit status: 0 success, 1 the device or
driver refused, 2 bad command line.";

/// Run accelerator kernels on the vfpga virtio device or, without its kernel module,
/// on vfpgad over vsock, a unix socket, TLS or Xen vchan.
#[derive(Debug, Parser)]
#[command(version, about = "Run accelerator kernels on the vfpga virtio device (or vfpgad over vsock, TLS or Xen vchan)", after_help = AFTER_HELP)]
pub struct Cli {
    /// Where vfpgad is: a device node (/dev/vfpgaN), vsock://CID:PORT, unix:PATH,
    /// tls://HOST:PORT or vchan://[DOMID][/PATH].
    #[arg(short, long, global = true, env = DEVICE_ENV, default_value = DEFAULT_DEVICE, value_name = "ENDPOINT")]
    pub device: String,

    /// For tls://: a folder with ca.pem (the CA of vfpgad's certificate) and this
    /// guest's client.pem and client.key.
    #[arg(long, global = true, env = "VFPGA_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,

    /// For tls://: the name in vfpgad's certificate [default: the host of the endpoint].
    #[arg(
        long,
        global = true,
        env = "VFPGA_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub server_name: Option<String>,

    /// On a stream endpoint: seconds to wait for vfpgad to come back when the
    /// connection breaks (a restart); sessions are reopened and an interrupted request
    /// is sent once more. 0: fail at once.
    #[arg(
        long,
        global = true,
        env = "VFPGA_RECONNECT_SECS",
        default_value_t = crate::DEFAULT_RECONNECT.as_secs(),
        value_name = "SECS"
    )]
    pub reconnect: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the device: engine, bitstream, queues, limits.
    Info,
    /// List the kernels and their argument signatures.
    Kernels,
    /// Run a kernel on files.
    Run {
        /// Kernel name (see `vfpga kernels`).
        kernel: String,
        /// Scalar argument, as NAME=VALUE or VALUE (next scalar in signature order).
        /// Integers take 0x and K/M/G suffixes.
        #[arg(long = "arg", value_name = "[NAME=]VALUE")]
        args: Vec<Item>,
        /// Input buffer from a file, as NAME=FILE or FILE (next input in order).
        #[arg(long = "in", value_name = "[NAME=]FILE")]
        ins: Vec<Item>,
        /// Output buffer to a file, as NAME=FILE or FILE. Outputs without a file are
        /// printed (in hex, up to 64 bytes).
        #[arg(long = "out", value_name = "[NAME=]FILE")]
        outs: Vec<Item>,
        /// Run this many times (outputs from the last run).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
    },
    /// Measure null-op latency and kernel throughput.
    Bench(BenchOpts),
    /// Show device-wide statistics.
    Stats,
    /// Show what this guest may do and how much: the host's policy for it.
    Limits,
    /// Load a bitstream from the host's library (by name; the host decides which).
    Load {
        /// Bitstream name.
        name: String,
    },
}

/// A `[NAME=]VALUE` item from the command line.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: Option<String>,
    pub value: String,
}

impl std::str::FromStr for Item {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.split_once('=') {
            Some((n, v)) if !n.is_empty() && !n.contains('/') => Item {
                name: Some(n.to_owned()),
                value: v.to_owned(),
            },
            _ => Item {
                name: None,
                value: s.to_owned(),
            },
        })
    }
}

/// Options of `vfpga bench`.
#[derive(Debug, clap::Args)]
pub struct BenchOpts {
    /// Null-op round trips to time.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub nops: u32,
    /// Bytes per vadd_u32 vector (K/M/G suffixes).
    #[arg(long, default_value = "16M", value_parser = parse_size, value_name = "BYTES")]
    pub size: usize,
    /// vadd_u32 runs to time per thread.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub runs: u32,
    /// Concurrent threads, each with its own session and buffers.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: u32,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let v = parse_scalar(ElemType::U64, s)?;
    let v = usize::try_from(v).map_err(|_| format!("{s} is too large"))?;
    if v == 0 || v % 4 != 0 {
        return Err(format!(
            "{s}: vectors hold u32 elements, give a non-zero multiple of 4"
        ));
    }
    Ok(v)
}

/// Parses a scalar of type `ty`: integers in decimal or 0x-hex with an optional K/M/G
/// (binary) suffix, floats in any Rust float syntax.
#[allow(clippy::cast_possible_truncation)] // every integer is range-checked first
pub fn parse_scalar(ty: ElemType, s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a valid {} value", ty.name());
    let int = |s: &str| -> Result<i128, String> {
        let (digits, mult) = match s.char_indices().last() {
            Some((i, 'K' | 'k')) => (&s[..i], 1i128 << 10),
            Some((i, 'M')) => (&s[..i], 1 << 20),
            Some((i, 'G')) => (&s[..i], 1 << 30),
            _ => (s, 1),
        };
        let (neg, digits) = digits
            .strip_prefix('-')
            .map_or((false, digits), |d| (true, d));
        let v = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(h) => i128::from_str_radix(h, 16),
            None => digits.parse::<i128>(),
        }
        .map_err(|_| bad())?;
        Ok(if neg { -v } else { v } * mult)
    };
    let ranged = |v: i128, lo: i128, hi: i128| {
        if v < lo || v > hi {
            Err(format!("`{s}` is out of range for {}", ty.name()))
        } else {
            Ok(v)
        }
    };
    Ok(match ty {
        ElemType::U8 => ranged(int(s)?, 0, 0xff)? as u64,
        ElemType::U32 => ranged(int(s)?, 0, u32::MAX.into())? as u64,
        ElemType::U64 => ranged(int(s)?, 0, u64::MAX.into())? as u64,
        ElemType::I16 => {
            u64::from(ranged(int(s)?, i16::MIN.into(), i16::MAX.into())? as i16 as u16)
        }
        ElemType::I32 => {
            u64::from(ranged(int(s)?, i32::MIN.into(), i32::MAX.into())? as i32 as u32)
        }
        ElemType::I64 => ranged(int(s)?, i64::MIN.into(), i64::MAX.into())? as i64 as u64,
        ElemType::F32 => u64::from(s.parse::<f32>().map_err(|_| bad())?.to_bits()),
        ElemType::F64 => s.parse::<f64>().map_err(|_| bad())?.to_bits(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn scalars_parse_by_type() {
        assert_eq!(parse_scalar(ElemType::U32, "0x10"), Ok(16));
        assert_eq!(parse_scalar(ElemType::U32, "4K"), Ok(4096));
        assert_eq!(parse_scalar(ElemType::I16, "-1"), Ok(0xffff));
        assert_eq!(
            parse_scalar(ElemType::F32, "1.5"),
            Ok(u64::from(1.5f32.to_bits()))
        );
        assert!(parse_scalar(ElemType::U32, "4G")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_scalar(ElemType::U32, "-1").is_err());
        assert!(parse_scalar(ElemType::U8, "x")
            .unwrap_err()
            .contains("not a valid u8"));
    }
}
