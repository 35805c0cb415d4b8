//! The byte-stream transports a vfpga request travels on besides virtio, shared by the
//! guest library (client side) and the daemons (server side): what an endpoint string
//! means ([`uri`]), AF_VSOCK sockets ([`vsock`]), mutual TLS set-up ([`tls`]) and Xen
//! vchan ([`vchan`], on the [`xen`] device files and xenstore).
//! Every transport carries the same stream encoding (`vfpga_proto::stream`).

pub mod tls;
pub mod uri;
pub mod vchan;
pub mod vsock;
pub mod xen;

pub use tls::{
    cert_names, check_server_name, client_config, default_server_name, explain, server_config,
    TlsError, TlsFiles,
};
pub use uri::{Endpoint, UriError};
