//! The metrics as pages: OpenMetrics text for Prometheus (encoded by the
//! `prometheus-client` crate) and a table for a person (`vfpgad status`), both from one
//! [`Snapshot`] taken per request.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use vfpga_engine::{BoardHealth, Engine};

use super::http::{Page, Pages};
use super::{op_label, status_label, GuestMetrics, KernelReading, N_OPS, N_STATUS};
use crate::server::LiveDevices;
use crate::tenant::Tenant;

/// The OpenMetrics content type Prometheus asks for.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format, for every other client (`promtool`, `curl`).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One kernel of one guest, read.
#[derive(Clone, Debug)]
pub struct KernelSnapshot {
    /// Its name.
    pub name: String,
    /// Its counters.
    pub counts: KernelReading,
    /// Run durations: `(upper bound s, count)` per bucket, sum s, count.
    pub durations: (Vec<(f64, u64)>, f64, u64),
}

impl KernelSnapshot {
    /// Every kernel of a guest, read now.
    pub fn all(guest: &GuestMetrics) -> Vec<Self> {
        guest
            .kernels()
            .iter()
            .map(|k| Self {
                name: k.name.clone(),
                counts: k.read(),
                durations: k.durations().read(),
            })
            .collect()
    }
}

/// One guest, read.
#[derive(Clone, Debug)]
pub struct GuestSnapshot {
    /// Its name.
    pub name: String,
    /// Whether a VMM is attached to its vhost-user socket.
    pub connected: bool,
    /// Its open stream connections.
    pub streams: usize,
    /// Runs admitted and not over, and their bytes.
    pub inflight: (u32, u64),
    /// Chains taken from each virtqueue and not yet answered (index 0: control).
    pub queues: Vec<usize>,
    /// Requests answered, `[op][status]`.
    pub requests: [[u64; N_STATUS]; N_OPS],
    /// Its kernels.
    pub kernels: Vec<KernelSnapshot>,
}

/// Everything the endpoint shows, read at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `sim`, `pl` or `remote`.
    pub engine: &'static str,
    /// When the daemon started, seconds since the epoch.
    pub start_time: f64,
    /// The guests, in configuration order.
    pub guests: Vec<GuestSnapshot>,
    /// The remote engine's boards.
    pub boards: Vec<BoardHealth>,
}

/// What the endpoint reads its snapshots from.
#[derive(Debug)]
pub struct Exposition {
    tenants: Vec<Arc<Tenant>>,
    live: Arc<LiveDevices>,
    engine: Arc<dyn Engine>,
    start_time: f64,
}

impl Exposition {
    /// Shows `tenants`, with their devices in `live`, served by `engine`.
    pub fn new(tenants: Vec<Arc<Tenant>>, live: Arc<LiveDevices>, engine: Arc<dyn Engine>) -> Self {
        Self {
            tenants,
            live,
            engine,
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// Reads everything now.
    pub fn snapshot(&self) -> Snapshot {
        let guests = self
            .tenants
            .iter()
            .map(|t| {
                let queues = self.live.queues_inflight(&t.name);
                GuestSnapshot {
                    name: t.name.clone(),
                    connected: queues.is_some(),
                    streams: self.live.stream_connections(&t.name),
                    inflight: t.inflight(),
                    queues: queues.unwrap_or_default(),
                    requests: t.metrics.requests(),
                    kernels: KernelSnapshot::all(&t.metrics),
                }
            })
            .collect();
        Snapshot {
            engine: self.engine.info().name,
            start_time: self.start_time,
            guests,
            boards: self.engine.boards(),
        }
    }
}

impl Pages for Exposition {
    fn page(&self, path: &str, accept: &str) -> Option<Page> {
        match path {
            "/metrics" if accept.contains("application/openmetrics-text") => {
                Some((OPENMETRICS, openmetrics(self.snapshot())))
            }
            "/metrics" => Some((PROMETHEUS_TEXT, prometheus_text(self.snapshot()))),
            "/status" => Some(("text/plain; charset=utf-8", status_text(&self.snapshot()))),
            _ => None,
        }
    }
}

/// The snapshot in OpenMetrics text.
pub fn openmetrics(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in it.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out = "# EOF\n".into();
    }
    out
}

/// The snapshot in the Prometheus text format (0.0.4).
pub fn prometheus_text(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let version = env!("CARGO_PKG_VERSION");
        let mut m = enc.encode_descriptor(
            "vfpgad_build_info",
            "The daemon's version and engine (always 1)",
            None,
            MetricType::Gauge,
        )?;
        let l: Labels<'_> = vec![("version", version), ("engine", self.engine)];
        ConstGauge::new(1).encode(m.encode_family(&l)?)?;
        let m = enc.encode_descriptor(
            "vfpgad_start_time",
            "When the daemon started, in seconds since the epoch",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.start_time).encode(m)?;

        gauges(
            &mut enc,
            "vfpgad_guest_connected",
            "Whether a VMM is attached to the guest's vhost-user socket",
            self,
            |g| vec![(vec![], i64::from(g.connected))],
        )?;
        gauges(
            &mut enc,
            "vfpgad_guest_stream_connections",
            "The guest's open stream connections (vsock, unix, TLS, vchan)",
            self,
            |g| vec![(vec![], count(g.streams))],
        )?;
        gauges(
            &mut enc,
            "vfpgad_inflight_runs",
            "Runs of the guest admitted and not yet over",
            self,
            |g| vec![(vec![], i64::from(g.inflight.0))],
        )?;
        gauges(
            &mut enc,
            "vfpgad_inflight_bytes",
            "Bytes the guest's runs in flight move",
            self,
            |g| vec![(vec![], i64::try_from(g.inflight.1).unwrap_or(i64::MAX))],
        )?;
        gauges(
            &mut enc,
            "vfpgad_queue_depth",
            "Requests taken from the virtqueue and not yet answered (queue 0: control)",
            self,
            |g| {
                g.queues
                    .iter()
                    .enumerate()
                    .map(|(q, &n)| (vec![("queue", q.to_string())], count(n)))
                    .collect()
            },
        )?;

        let mut m = enc.encode_descriptor(
            "vfpgad_requests",
            "Requests answered, by operation and status",
            None,
            MetricType::Counter,
        )?;
        for g in &self.guests {
            for (o, row) in g.requests.iter().enumerate() {
                for (s, &n) in row.iter().enumerate().filter(|(_, &n)| n > 0) {
                    let l: Labels<'_> = vec![
                        ("guest", &g.name),
                        ("op", op_label(o)),
                        ("status", status_label(s)),
                    ];
                    ConstCounter::new(n).encode(m.encode_family(&l)?)?;
                }
            }
        }

        per_kernel(
            &mut enc,
            (
                "vfpgad_runs",
                "Runs ended, by kernel and status",
                None,
                MetricType::Counter,
            ),
            self,
            |m, g, k| {
                for (s, &n) in k.counts.runs.iter().enumerate() {
                    // Every kernel shows its OK count, zero or not; other statuses once seen.
                    if n > 0 || s == 0 {
                        let l: Labels<'_> = vec![
                            ("guest", &g.name),
                            ("kernel", &k.name),
                            ("status", status_label(s)),
                        ];
                        ConstCounter::new(n).encode(m.encode_family(&l)?)?;
                    }
                }
                Ok(())
            },
        )?;
        per_kernel(
            &mut enc,
            (
                "vfpgad_run",
                "Bytes successful runs read (in) and wrote (out)",
                Some(Unit::Bytes),
                MetricType::Counter,
            ),
            self,
            |m, g, k| {
                for (dir, n) in [("in", k.counts.bytes_in), ("out", k.counts.bytes_out)] {
                    let l: Labels<'_> =
                        vec![("guest", &g.name), ("kernel", &k.name), ("direction", dir)];
                    ConstCounter::new(n).encode(m.encode_family(&l)?)?;
                }
                Ok(())
            },
        )?;
        let kernel = |g: &'_ GuestSnapshot, k: &'_ KernelSnapshot| -> Vec<(&'static str, String)> {
            vec![("guest", g.name.clone()), ("kernel", k.name.clone())]
        };
        per_kernel(
            &mut enc,
            (
                "vfpgad_engine_busy",
                "Time the engine spent on the guest's successful runs",
                Some(Unit::Seconds),
                MetricType::Counter,
            ),
            self,
            |m, g, k| {
                ConstCounter::new(k.counts.engine_seconds).encode(m.encode_family(&kernel(g, k))?)
            },
        )?;
        per_kernel(
            &mut enc,
            (
                "vfpgad_run_duration",
                "Engine time of successful runs",
                Some(Unit::Seconds),
                MetricType::Histogram,
            ),
            self,
            |m, g, k| {
                let (buckets, sum, n) = &k.durations;
                m.encode_family(&kernel(g, k))?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        *sum, *n, buckets, None,
                    )
            },
        )?;
        per_kernel(
            &mut enc,
            (
                "vfpgad_sessions",
                "Sessions open, by kernel",
                None,
                MetricType::Gauge,
            ),
            self,
            |m, g, k| ConstGauge::new(k.counts.sessions).encode(m.encode_family(&kernel(g, k))?),
        )?;
        let mut m = enc.encode_descriptor(
            "vfpgad_board_up",
            "Whether the remote engine's board answers (1) or not (0)",
            None,
            MetricType::Gauge,
        )?;
        for b in &self.boards {
            let l: Labels<'_> = vec![("board", &b.name)];
            ConstGauge::new(i64::from(b.up)).encode(m.encode_family(&l)?)?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn kernels(&self) -> impl Iterator<Item = (&GuestSnapshot, &KernelSnapshot)> {
        self.guests
            .iter()
            .flat_map(|g| g.kernels.iter().map(move |k| (g, k)))
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A family's name, help, unit and type.
type Family = (&'static str, &'static str, Option<Unit>, MetricType);

/// A family with samples per guest and kernel, which `each` encodes.
fn per_kernel(
    enc: &mut DescriptorEncoder<'_>,
    (name, help, unit, kind): Family,
    s: &Snapshot,
    mut each: impl FnMut(&mut MetricEncoder<'_>, &GuestSnapshot, &KernelSnapshot) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for (g, k) in s.kernels() {
        each(&mut m, g, k)?;
    }
    Ok(())
}

/// A gauge family with a `guest` label and the extra labels `each` gives per value.
fn gauges(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    s: &Snapshot,
    each: impl Fn(&GuestSnapshot) -> Vec<(Vec<(&'static str, String)>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for g in &s.guests {
        for (extra, v) in each(g) {
            let mut l: Vec<(&str, &str)> = vec![("guest", &g.name)];
            l.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            ConstGauge::new(v).encode(m.encode_family(&l)?)?;
        }
    }
    Ok(())
}

/// The snapshot as a table for a person.
pub fn status_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let up = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - s.start_time;
    let _ = writeln!(
        out,
        "vfpgad {}, engine {}, up {}",
        env!("CARGO_PKG_VERSION"),
        s.engine,
        human_duration(up.max(0.0))
    );
    for b in &s.boards {
        let state = if b.up {
            "up".to_owned()
        } else if b.last_error.is_empty() {
            "down".to_owned()
        } else {
            format!("down: {}", b.last_error)
        };
        let _ = writeln!(out, "board {}: {state}", b.name);
    }
    for g in &s.guests {
        let total: u64 = g.requests.iter().flatten().sum();
        let failed: u64 = g
            .requests
            .iter()
            .map(|row| row[1..].iter().sum::<u64>())
            .sum();
        let _ = writeln!(out, "\nguest {}", g.name);
        let _ = writeln!(
            out,
            "  virtio: {}   streams: {}   runs in flight: {} ({} bytes)   queue depth: {}",
            if g.connected {
                "connected"
            } else {
                "not connected"
            },
            g.streams,
            g.inflight.0,
            g.inflight.1,
            if g.queues.is_empty() {
                "-".to_owned()
            } else {
                g.queues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            }
        );
        let _ = writeln!(out, "  requests: {total} answered, {failed} not OK");
        for (o, row) in g.requests.iter().enumerate() {
            let errors: Vec<String> = row
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, &n)| n > 0)
                .map(|(st, n)| format!("{} {n}", status_label(st)))
                .collect();
            if !errors.is_empty() {
                let _ = writeln!(out, "    {}: {}", op_label(o), errors.join(", "));
            }
        }
        if g.kernels.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<24} {:>8} {:>7} {:>9} {:>11} {:>11} {:>10} {:>10}",
            "kernel", "runs", "failed", "sessions", "in", "out", "busy", "mean run"
        );
        for k in &g.kernels {
            let c = &k.counts;
            let ok = c.runs[0];
            let failed: u64 = c.runs[1..].iter().sum();
            let mean = if ok > 0 {
                c.engine_seconds / ok as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "  {:<24} {:>8} {:>7} {:>9} {:>11} {:>11} {:>10} {:>10}",
                k.name.escape_debug().to_string(),
                ok,
                failed,
                c.sessions,
                human_bytes(c.bytes_in),
                human_bytes(c.bytes_out),
                human_duration(c.engine_seconds),
                human_duration(mean)
            );
        }
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfpga_proto::{Opcode, Status};

    fn snapshot(kernel: &str) -> Snapshot {
        let m = GuestMetrics::default();
        let k = m.kernel(kernel);
        k.session(1);
        k.ended(Status::Ok);
        k.ran(4096, 2048, 1_500_000);
        k.ended(Status::Ok);
        k.ran(0, 0, 20_000_000);
        k.ended(Status::Timeout);
        m.request(Some(Opcode::Run), Status::Ok);
        m.request(Some(Opcode::Run), Status::Timeout);
        Snapshot {
            engine: "sim",
            start_time: 1.0,
            guests: vec![GuestSnapshot {
                name: "vm0".into(),
                connected: true,
                streams: 2,
                inflight: (1, 64),
                queues: vec![0, 3],
                requests: m.requests(),
                kernels: KernelSnapshot::all(&m),
            }],
            boards: vec![BoardHealth {
                name: "pynq".into(),
                up: false,
                last_error: "refused".into(),
            }],
        }
    }

    #[test]
    fn the_exposition_has_every_family_and_ends_with_eof() {
        let text = openmetrics(snapshot("vadd_u32"));
        for line in [
            "vfpgad_requests_total{guest=\"vm0\",op=\"RUN\",status=\"TIMEOUT\"} 1",
            "vfpgad_runs_total{guest=\"vm0\",kernel=\"vadd_u32\",status=\"OK\"} 2",
            "vfpgad_run_bytes_total{guest=\"vm0\",kernel=\"vadd_u32\",direction=\"in\"} 4096",
            "vfpgad_run_duration_seconds_bucket{le=\"0.0025\",guest=\"vm0\",kernel=\"vadd_u32\"} 1",
            "vfpgad_run_duration_seconds_bucket{le=\"0.001\",guest=\"vm0\",kernel=\"vadd_u32\"} 0",
            "vfpgad_run_duration_seconds_bucket{le=\"0.025\",guest=\"vm0\",kernel=\"vadd_u32\"} 2",
            "vfpgad_run_duration_seconds_bucket{le=\"+Inf\",guest=\"vm0\",kernel=\"vadd_u32\"} 2",
            "vfpgad_run_duration_seconds_count{guest=\"vm0\",kernel=\"vadd_u32\"} 2",
            "vfpgad_sessions{guest=\"vm0\",kernel=\"vadd_u32\"} 1",
            "vfpgad_queue_depth{guest=\"vm0\",queue=\"1\"} 3",
            "vfpgad_board_up{board=\"pynq\"} 0",
            "vfpgad_build_info{version=",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn hostile_kernel_names_are_escaped() {
        let text = openmetrics(snapshot("a\"b\\c\nd"));
        assert!(text.contains(r#"kernel="a\"b\\c\nd""#), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with('d')).count(),
            0,
            "no line starts mid-name"
        );
    }

    #[test]
    fn the_status_page_shows_the_same_counts() {
        let t = status_text(&snapshot("sha256"));
        assert!(t.contains("board pynq: down: refused"), "{t}");
        assert!(t.contains("guest vm0"), "{t}");
        assert!(t.contains("requests: 2 answered, 1 not OK"), "{t}");
        assert!(t.contains("21.50 ms"), "busy: {t}");
        assert!(t.contains("RUN: TIMEOUT 1"), "{t}");
        assert!(t.contains("4.0 KiB"), "{t}");
        assert!(t.contains("10.75 ms"), "mean of 1.5 and 20 ms: {t}");
    }
}
