//! Shared by the stream benches: an in-process vfpgad serving one guest on a unix
//! socket and on TLS over loopback, and the guest library connected both ways.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use vfpga::{Device, Options};
use vfpga_engine::sim::SimEngine;
use vfpgad::config::{GuestConfig, TlsSection};
use vfpgad::{Config, Server};

/// vfpgad (sim engine) serving guest `name` on a unix socket in `dir` and on TLS over
/// loopback (certificates made in `dir/pki`), and a device connected on each, named
/// `labels[0]` (unix) and `labels[1]` (TLS).
pub fn stream_server<'l>(
    dir: &Path,
    name: &str,
    labels: [&'l str; 2],
) -> (Server, [(&'l str, Device); 2]) {
    let pki = dir.join("pki");
    vfpga_agent::cert::init(&pki, &["127.0.0.1".into()], name).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sock = dir.join(format!("{name}.stream"));
    let mut guest = GuestConfig::named(name);
    guest.listen = vec![
        format!("unix:{}", sock.display()),
        format!("tls:127.0.0.1:{port}"),
    ];
    let config = Config {
        guests: vec![guest],
        tls: Some(TlsSection {
            ca: pki.join("ca.pem"),
            cert: pki.join("server.pem"),
            key: pki.join("server.key"),
        }),
        ..Config::default()
    };
    config.validate().unwrap();
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let tls = Options {
        tls: Some(vfpga::tls_dir(&pki)),
        ..Options::default()
    };
    let devs = [
        (
            labels[0],
            Device::open(format!("unix:{}", sock.display())).unwrap(),
        ),
        (
            labels[1],
            Device::open_with(format!("tls://127.0.0.1:{port}"), &tls).unwrap(),
        ),
    ];
    (server, devs)
}
