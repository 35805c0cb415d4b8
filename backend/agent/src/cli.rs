//! `vfpga-agent`'s command line: its flags and subcommands, and their help. The binary
//! parses it; the packaging's generator (packaging/docgen) writes the man pages and
//! shell completions from the same definition.
// The comments on flags are their --help text, where brackets (`[NAME=]VALUE`,
// `HOST[:PORT]`) are syntax, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cert;

/// What `--help` shows after the options: examples and where to read more.
pub const AFTER_HELP: &str = "\
Examples:
  Create a CA and certificates (board reachable as pynq1 / 192.168.42.20):
    vfpga-agent cert init --dir /etc/vfpga/pki --server-name pynq1 --server-name 192.168.42.20
  Serve the board's programmable logic, letting hosts switch between two bitstreams:
    vfpga-agent serve --pki /etc/vfpga/pki --engine pl --library /lib/firmware/vfpga --bitstream base --allow base --allow filters
  Serve the software model (no FPGA):
    vfpga-agent serve --pki ./pki --listen 127.0.0.1:7447
  Upload a bitstream from a host:
    vfpga-agent upload --to pynq1:7447 --pki ./pki --name base base.toml base.bit.bin

docs/remote.md covers building for the PYNQ-Z1 (armv7) and running as a service.
SIGTERM or SIGINT stops the agent: running kernels finish, connections close.";

/// Serves a board's FPGA (or its software model) to vfpgad hosts over TCP with mutual TLS.
#[derive(Debug, Parser)]
#[command(version, about = "Serve a board's FPGA accelerator to vfpgad hosts over TCP with mutual TLS", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Pki {
    /// Folder holding ca.pem and this side's certificate and key (from `cert init`).
    #[arg(long, value_name = "DIR")]
    pub pki: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the accelerator.
    Serve {
        #[command(flatten)]
        pki: Pki,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:7447")]
        listen: SocketAddr,
        /// `pl` (this board's programmable logic) or `sim` (software model).
        #[arg(long, default_value = "sim")]
        engine: String,
        /// Bitstream library: NAME.toml manifests and their files (uploads go here).
        #[arg(long, value_name = "DIR")]
        library: Option<PathBuf>,
        /// A bitstream hosts may load from the library; repeatable ("*": all). None by
        /// default: the board owner says which bitstreams its fabric may take.
        #[arg(long = "allow", value_name = "NAME")]
        allow: Vec<String>,
        /// Bitstream to load at start (pl engine); allowed by naming it here.
        #[arg(long, value_name = "NAME")]
        bitstream: Option<String>,
        /// Root of sysfs and /dev for the pl engine.
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// Most host connections at once.
        #[arg(long, default_value_t = 16)]
        max_connections: usize,
        /// Most kernels running at once.
        #[arg(long, default_value_t = 2)]
        max_concurrent: usize,
        /// Largest request in MiB (inputs plus outputs).
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        max_request_mib: u64,
        /// Revocation list (`cert revoke` writes it): certificates listed there are
        /// refused; the file is read again when it changes.
        #[arg(long, value_name = "FILE")]
        revoked: Option<PathBuf>,
    },
    /// Create or extend the deployment's certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Upload a bitstream and its manifest to an agent (and optionally load it).
    Upload {
        #[command(flatten)]
        pki: Pki,
        /// Agent address (host:port).
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Name in the agent's certificate (default: the host part of --to).
        #[arg(long)]
        server_name: Option<String>,
        /// Bitstream name (the manifest's [bitstream] name).
        #[arg(long)]
        name: String,
        /// Load it once uploaded.
        #[arg(long)]
        load: bool,
        /// The manifest (TOML).
        manifest: PathBuf,
        /// The bitstream (or overlay) file the manifest names.
        bitstream: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a CA plus server.pem/key (for agents) and client.pem/key (for vfpgad).
    Init {
        /// Folder to create them in.
        #[arg(long)]
        dir: PathBuf,
        /// Names (DNS or IP) the board is reached by; repeatable.
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// Name of the client certificate.
        #[arg(long, default_value = "vfpgad")]
        client_name: String,
    },
    /// Issue another server certificate (e.g. for a second board) as PREFIX.pem/key.
    Server {
        /// Folder holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// File prefix.
        #[arg(long)]
        prefix: String,
        /// Names (DNS or IP) the board is reached by; repeatable.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = cert::DEFAULT_DAYS)]
        days: u32,
        /// Replace PREFIX.pem/key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Issue another client certificate as PREFIX.pem/key.
    Client {
        /// Folder holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// File prefix.
        #[arg(long)]
        prefix: String,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// What it may do on the boards: run kernels (run), or also upload and load
        /// bitstreams (admin).
        #[arg(long, value_enum, default_value = "run")]
        role: cert::Role,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = cert::DEFAULT_DAYS)]
        days: u32,
        /// Replace PREFIX.pem/key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Revoke a certificate: add it to a revocation list the boards read (`serve
    /// --revoked FILE`).
    Revoke {
        /// The certificate (PEM) to revoke.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The revocation list to add it to (created if missing).
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
    },
}
