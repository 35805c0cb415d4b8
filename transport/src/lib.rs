//! The byte-stream transports a vfpga request travels on besides virtio, shared by the
//! guest library (client side) and the daemons (server side): what an endpoint string
//! means ([`uri`]), AF_VSOCK sockets ([`vsock`]) and mutual TLS set-up ([`tls`]).
//! Every transport carries the same stream encoding (`vfpga_proto::stream`).

pub mod tls;
pub mod uri;
pub mod vsock;

pub use tls::{
    cert_names, check_server_name, client_config, default_server_name, server_config, TlsError,
    TlsFiles,
};
pub use uri::{Endpoint, UriError};
