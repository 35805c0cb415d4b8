//! The remote engine and the pieces it shares with the board agent: one connection
//! speaking the stream encoding ([`conn`]), and the pool of boards behind the
//! [`vfpga_engine::Engine`] trait ([`engine`]). Mutual TLS set-up is
//! `vfpga_transport::tls`.

pub mod conn;
pub mod engine;

pub use conn::{Conn, ConnError};
pub use engine::{BoardConfig, RemoteConfig, RemoteEngine};
