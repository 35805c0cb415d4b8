//! The remote engine and the pieces it shares with the board agent: mutual TLS set-up
//! ([`tls`]), one connection speaking the stream encoding ([`conn`]), and the pool of
//! boards behind the [`vfpga_engine::Engine`] trait ([`engine`]).

pub mod conn;
pub mod engine;
pub mod tls;

pub use conn::{Conn, ConnError};
pub use engine::{BoardConfig, RemoteConfig, RemoteEngine};
pub use tls::{
    check_server_name, client_config, default_server_name, server_config, TlsError, TlsFiles,
};
