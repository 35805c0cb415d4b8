//! The daemon's configuration: a TOML file, overridden by command-line flags, checked
//! as a whole before anything starts.
//!
//! ```toml
//! [daemon]
//! engine = "sim"            # the accelerator back end
//! engine_threads = 2        # kernels running at once, virtio and streams (default: CPU count)
//! inline_cost = 65536       # runs estimated cheaper than this stay on the queue's thread
//! poll_us = 0               # after work, watch a queue this long before waiting for a kick
//! socket_mode = "0660"      # socket permissions (default: umask)
//! socket_group = "kvm"      # socket group: the one QEMU runs in
//!
//! [device]                  # limits announced to every guest in the config space
//! request_queues = 2
//! queue_size = 1024       # QEMU's largest vq_size
//! max_segments = 16384
//! max_request_bytes = 67108864
//! max_sessions = 64
//!
//! [library]                 # bitstreams guests may load, by name
//! dir = "/var/lib/vfpga/bitstreams"
//! allow = ["base", "sim-base"]  # only these names ("*": every manifest in dir)
//! share = ["base", "video"]  # time-shared: kernels offered as "base/vadd_u32", ...
//! min_slice_ms = 100        # least time a shared bitstream keeps the fabric
//!
//! [pl]                      # engine = "pl": this board's programmable logic
//! bitstream = "base"        # loaded at start from [library]; must be allowed too
//!
//! [remote]                  # engine = "remote": boards running vfpga-agent
//! ca = "/etc/vfpga/pki/ca.pem"
//! cert = "/etc/vfpga/pki/client.pem"
//! key = "/etc/vfpga/pki/client.key"
//! timeout_ms = 10000
//! [[remote.board]]
//! name = "pynq1"
//! address = "192.168.42.20:7447"
//!
//! [tls]                     # for tls: listeners: vfpgad's certificate, and the CA
//! ca = "/etc/vfpga/pki/ca.pem"    # that signs the guests' client certificates
//! cert = "/etc/vfpga/pki/server.pem"
//! key = "/etc/vfpga/pki/server.key"
//!
//! [stream]                  # guests on byte streams (vsock, unix, tls, vchan)
//! max_connections = 8       # per guest
//! idle_timeout_ms = 600000  # longest wait for a connection's next request (0: none)
//!
//! [[guest]]                 # a vhost-user socket and/or stream listeners per guest
//! name = "vm0"
//! socket = "/run/vfpga/vm0.sock"
//! listen = ["unix:/run/vfpga/vm0.vsock_7000", "tls:0.0.0.0:7000"]
//! tls_name = "vm0"          # name in its client certificate (default: its name)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tenant::Policy;

mod validate;

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for this configuration.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message, with line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value out of range or an impossible combination.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon-wide settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Device limits, the same for every guest.
    #[serde(default)]
    pub device: DeviceLimits,
    /// Bitstream library.
    pub library: Option<LibraryConfig>,
    /// Guests, one socket each.
    #[serde(default, rename = "guest")]
    pub guests: Vec<GuestConfig>,
    /// The pl engine (`engine = "pl"`).
    pub pl: Option<PlSection>,
    /// The remote engine (`engine = "remote"`).
    pub remote: Option<RemoteSection>,
    /// Xen dom0 service mode.
    #[serde(default)]
    pub xen: XenSection,
    /// vfpgad's certificate for `tls:` listeners.
    pub tls: Option<TlsSection>,
    /// Stream connections.
    #[serde(default)]
    pub stream: StreamSection,
    /// The metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[metrics]`: the endpoint Prometheus scrapes and `vfpgad status` reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `HOST:PORT` (e.g. "127.0.0.1:9464") or `unix:PATH`; none: no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl MetricsSection {
    /// The address, checked.
    pub fn addr(&self) -> Result<Option<crate::metrics::addr::Addr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|l| {
                l.parse()
                    .map_err(|e| ConfigError::Invalid(format!("[metrics] listen = {e}")))
            })
            .transpose()
    }
}

/// `[tls]`: vfpgad's side of mutual TLS with guests.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// CA certificate the guests' client certificates are signed by.
    pub ca: PathBuf,
    /// vfpgad's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// `[stream]`: bounds of stream connections.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    /// Connections per guest.
    pub max_connections: usize,
    /// Longest wait for a connection's next request; 0: no limit.
    pub idle_timeout_ms: u64,
}

impl Default for StreamSection {
    fn default() -> Self {
        Self {
            max_connections: 8,
            idle_timeout_ms: 600_000,
        }
    }
}

/// `[xen]`: dom0 service mode. The daemon publishes itself and its guests in xenstore
/// and closes a guest's sessions when its domain goes away.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XenSection {
    /// Register in xenstore and watch domains.
    pub enable: bool,
    /// xenstore path of the record.
    pub path: String,
}

impl Default for XenSection {
    fn default() -> Self {
        Self {
            enable: false,
            path: vfpga_xen::service::DEFAULT_PATH.into(),
        }
    }
}

/// `[pl]`: this board's programmable logic (a Zynq-class SoC running vfpgad itself).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlSection {
    /// Prefix of sysfs and /dev paths (for tests and chroots).
    #[serde(default = "slash")]
    pub root: PathBuf,
    /// Bitstream to load at start (from `[library]`).
    pub bitstream: Option<String>,
    /// fpga_manager instance.
    #[serde(default = "fpga0")]
    pub fpga: String,
}

fn slash() -> PathBuf {
    PathBuf::from("/")
}

fn fpga0() -> String {
    "fpga0".into()
}

/// `[remote]`: boards running `vfpga-agent`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// CA certificate the boards' certificates are signed by.
    pub ca: PathBuf,
    /// This host's client certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Longest a request may take, end to end.
    #[serde(default = "default_remote_timeout")]
    pub timeout_ms: u64,
    /// Connections (concurrent requests) per board.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Pause between health checks.
    #[serde(default = "default_health")]
    pub health_interval_ms: u64,
    /// The boards.
    #[serde(rename = "board")]
    pub boards: Vec<BoardSection>,
}

fn default_remote_timeout() -> u64 {
    10_000
}

fn default_connections() -> usize {
    2
}

fn default_health() -> u64 {
    1_000
}

/// `[[remote.board]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// Name for logs.
    pub name: String,
    /// `host:port` of its agent.
    pub address: String,
    /// Name in its certificate (default: the host part of `address`).
    pub server_name: Option<String>,
}

impl BoardSection {
    /// The name its certificate must carry.
    pub fn server_name(&self) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| vfpga_transport::default_server_name(&self.address))
    }
}

/// `[daemon]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Which back end runs the kernels.
    pub engine: EngineKind,
    /// Kernels running at once (engine threads for virtio runs, turns for stream runs);
    /// 0 means one per CPU.
    pub engine_threads: usize,
    /// Estimated cost (element operations) above which a run leaves the queue thread.
    pub inline_cost: u64,
    /// Microseconds a request queue is watched for new requests after it ran dry,
    /// before notifications are enabled again (0: not at all). The next request of a
    /// guest sending one after another then costs no kick and no wake-up of the
    /// queue's thread; the price is that much CPU after each burst of work (an idle
    /// queue costs nothing).
    pub poll_us: u64,
    /// Permissions of the sockets, in octal ("0660"); default: as the umask leaves them.
    pub socket_mode: Option<String>,
    /// Group owning the sockets (name or number), e.g. the group QEMU runs in.
    pub socket_group: Option<String>,
    /// Under a supervisor: its private folder, where each guest's state file is.
    #[serde(skip)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Under a supervisor: the stream listeners it holds, by socket key, as
    /// descriptors this process inherited.
    #[serde(skip)]
    pub inherited: Vec<(String, i32)>,
}

/// `[daemon] engine`: the back end that runs the kernels.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum EngineKind {
    /// The bit-exact software model.
    #[default]
    Sim,
    /// This board's programmable logic.
    Pl,
    /// Boards running vfpga-agent, over TLS.
    Remote,
}

impl EngineKind {
    /// The name in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sim => "sim",
            EngineKind::Pl => "pl",
            EngineKind::Remote => "remote",
        }
    }
}

impl From<EngineKind> for &'static str {
    fn from(e: EngineKind) -> Self {
        e.as_str()
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(EngineKind::Sim),
            "pl" => Ok(EngineKind::Pl),
            "remote" => Ok(EngineKind::Remote),
            other => Err(format!(
                "engine {other:?}: use \"sim\" (software model), \"pl\" (this board's FPGA) or \"remote\" (boards running vfpga-agent)"
            )),
        }
    }
}

impl TryFrom<String> for EngineKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            engine: EngineKind::Sim,
            engine_threads: 0,
            inline_cost: 1 << 16,
            poll_us: 0,
            socket_mode: None,
            socket_group: None,
            state_dir: None,
            inherited: Vec::new(),
        }
    }
}

/// `[device]`: what the config space announces, and every guest's default policy
/// (a `[[guest]]` overrides any policy field, and `max_sessions`).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceLimits {
    /// Request queues after the control queue.
    pub request_queues: u16,
    /// Descriptors per virtqueue (power of two).
    pub queue_size: u16,
    /// Most descriptors per request chain.
    pub max_segments: u32,
    /// Most bytes per request chain.
    pub max_request_bytes: u64,
    /// Most sessions open per device (per stream connection on streams).
    pub max_sessions: u32,
    /// Kernels a guest may run (`"*"`: all).
    pub kernels: Vec<String>,
    /// Bitstreams a guest may load (default: none; `"*"`: every one `[library] allow`s).
    pub bitstreams: Vec<String>,
    /// Runs a guest may have in flight at once.
    pub max_inflight: u32,
    /// Bytes (inputs plus outputs) of a guest's runs in flight at once.
    pub max_inflight_bytes: u64,
    /// Runs per second a guest may start; 0: no limit.
    pub rate_runs: u64,
    /// Bytes per second a guest's runs may move; 0: no limit.
    pub rate_bytes: u64,
    /// A guest's share of engine time against the others' while several wait (1..=1000;
    /// a guest of weight 3 gets three times the time of one of weight 1).
    pub weight: u32,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        let p = Policy::default();
        Self {
            request_queues: 2,
            queue_size: 1024,
            max_segments: 16384,
            max_request_bytes: 64 << 20,
            max_sessions: 64,
            kernels: p.kernels,
            bitstreams: p.bitstreams,
            max_inflight: p.max_inflight,
            max_inflight_bytes: p.max_inflight_bytes,
            rate_runs: p.rate_runs,
            rate_bytes: p.rate_bytes,
            weight: p.weight,
        }
    }
}

/// `[library]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryConfig {
    /// Folder of `NAME.toml` manifests.
    pub dir: PathBuf,
    /// Names guests may load.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Bitstreams time-shared between guests: their kernels are offered as
    /// `BITSTREAM/KERNEL` whatever is loaded, and the fabric switches between them as
    /// runs ask (each must also be in `allow`).
    #[serde(default)]
    pub share: Vec<String>,
    /// Least time a shared bitstream keeps the fabric while its runs wait and another's
    /// do too (milliseconds; 0: switch whenever another bitstream's run is next).
    #[serde(default = "default_min_slice_ms")]
    pub min_slice_ms: u64,
}

/// Permission bits in octal, such as `0660`.
pub fn parse_mode(m: &str) -> Result<u32, String> {
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o777)
        .ok_or_else(|| "give octal permission bits such as 0660".to_owned())
}

/// A group's id, from a number or a name in the group database.
pub fn group_id(g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!(
            "no such group on this host (`getent group {g}` lists nothing); create it or name the group QEMU runs in"
        )),
        Err(e) => Err(format!("cannot look the group up: {e}")),
    }
}

fn default_min_slice_ms() -> u64 {
    100
}

impl LibraryConfig {
    /// A library in `dir` allowing `allow`, sharing nothing.
    pub fn new(dir: PathBuf, allow: Vec<String>) -> Self {
        Self {
            dir,
            allow,
            share: Vec::new(),
            min_slice_ms: default_min_slice_ms(),
        }
    }
}

/// `[[guest]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// Name, shown to the guest in `GET_INFO` and in logs.
    pub name: String,
    /// vhost-user socket the guest's VMM connects to (none: streams only).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Stream listeners (`unix:PATH`, `vsock:CID:PORT`, `tls:ADDR:PORT`, `vchan`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// The name its TLS client certificate carries; default: the guest's name.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Policy and limits of this guest (`[device]`'s when not given).
    #[serde(default)]
    pub max_sessions: Option<u32>,
    /// Kernels it may run.
    #[serde(default)]
    pub kernels: Option<Vec<String>>,
    /// Bitstreams it may load.
    #[serde(default)]
    pub bitstreams: Option<Vec<String>>,
    /// Runs in flight at once.
    #[serde(default)]
    pub max_inflight: Option<u32>,
    /// Bytes of runs in flight at once.
    #[serde(default)]
    pub max_inflight_bytes: Option<u64>,
    /// Runs per second.
    #[serde(default)]
    pub rate_runs: Option<u64>,
    /// Bytes per second.
    #[serde(default)]
    pub rate_bytes: Option<u64>,
    /// Share of engine time.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Xen domain the guest is (dom0 service mode); default: the guest's name.
    #[serde(default)]
    pub domain: Option<String>,
}

impl GuestConfig {
    /// A guest with a name and a socket, its domain named like it.
    pub fn new(name: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: Some(socket.into()),
            ..Self::named(name)
        }
    }

    /// A guest with a name only (add a socket or listeners).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            socket: None,
            listen: Vec::new(),
            tls_name: None,
            domain: None,
            max_sessions: None,
            kernels: None,
            bitstreams: None,
            max_inflight: None,
            max_inflight_bytes: None,
            rate_runs: None,
            rate_bytes: None,
            weight: None,
        }
    }

    /// Its policy: its own fields, else `[device]`'s.
    pub fn policy(&self, d: &DeviceLimits) -> Policy {
        Policy {
            kernels: self.kernels.clone().unwrap_or_else(|| d.kernels.clone()),
            bitstreams: self
                .bitstreams
                .clone()
                .unwrap_or_else(|| d.bitstreams.clone()),
            max_inflight: self.max_inflight.unwrap_or(d.max_inflight),
            max_inflight_bytes: self.max_inflight_bytes.unwrap_or(d.max_inflight_bytes),
            rate_runs: self.rate_runs.unwrap_or(d.rate_runs),
            rate_bytes: self.rate_bytes.unwrap_or(d.rate_bytes),
            weight: self.weight.unwrap_or(d.weight),
        }
    }

    /// Its device limits: `[device]`'s, with its own `max_sessions`.
    pub fn limits(&self, d: &DeviceLimits) -> DeviceLimits {
        DeviceLimits {
            max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
            ..d.clone()
        }
    }

    /// The Xen domain name whose death ends this guest's sessions.
    pub fn domain(&self) -> &str {
        self.domain.as_deref().unwrap_or(&self.name)
    }

    /// The name its TLS client certificate must carry.
    pub fn tls_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.name)
    }

    /// Its stream listeners, parsed (checked by [`Config::validate`]).
    pub fn listens(&self) -> Vec<crate::stream::Listen> {
        self.listen
            .iter()
            .filter_map(|l| crate::stream::Listen::parse(l).ok())
            .collect()
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// The socket permission bits, if configured.
    pub fn socket_mode(&self) -> Result<Option<u32>, ConfigError> {
        self.daemon
            .socket_mode
            .as_deref()
            .map(|m| {
                parse_mode(m)
                    .map_err(|e| ConfigError::Invalid(format!("[daemon] socket_mode = {m:?}: {e}")))
            })
            .transpose()
    }

    /// The socket group id, if configured (a number, or a name in the group database).
    pub fn socket_gid(&self) -> Result<Option<u32>, ConfigError> {
        self.daemon
            .socket_group
            .as_deref()
            .map(|g| {
                group_id(g).map_err(|e| {
                    ConfigError::Invalid(format!("[daemon] socket_group = {g:?}: {e}"))
                })
            })
            .transpose()
    }

    /// Engine threads to start.
    pub fn engine_threads(&self) -> usize {
        match self.daemon.engine_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(
            r#"
            [device]
            request_queues = 4
            [[guest]]
            name = "vm0"
            socket = "/tmp/vm0.sock"
            "#,
        );
        assert_eq!(c.device.request_queues, 4);
        assert_eq!(c.device.queue_size, 1024);
        assert_eq!(c.daemon.engine, EngineKind::Sim);
        c.validate().unwrap();
    }
}
