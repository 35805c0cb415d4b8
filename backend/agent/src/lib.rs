//! The board agent: serves a board's engine to vfpgad hosts over TCP with mutual TLS
//! ([`Agent`]), and manages the deployment's certificates ([`cert`]).

pub mod cert;
pub mod cli;
mod serve;

pub use serve::{Agent, AgentConfig};
