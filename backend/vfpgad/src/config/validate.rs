//! [`Config::validate`]: every value and combination checked, each refusal saying
//! what to change.

use vfpga_engine::manifest::valid_name;

use super::{Config, ConfigError, EngineKind};

/// Longest adaptive-polling window, in microseconds.
pub const MAX_POLL_US: u64 = 10_000;

impl Config {
    /// Checks every value and combination; the message says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.metrics.addr()?;
        if self.daemon.poll_us > MAX_POLL_US {
            return bad(format!(
                "[daemon] poll_us = {}: at most {MAX_POLL_US} (a queue's thread spins that long after each burst)",
                self.daemon.poll_us
            ));
        }
        let d = &self.device;
        match self.daemon.engine {
            EngineKind::Sim => {}
            EngineKind::Pl => {
                if self.library.is_none() {
                    return bad("[daemon] engine = \"pl\" needs a [library] (manifests and bitstream files)".into());
                }
            }
            EngineKind::Remote => match &self.remote {
                None => {
                    return bad(
                        "[daemon] engine = \"remote\" needs a [remote] section with its boards"
                            .into(),
                    )
                }
                Some(r) if r.boards.is_empty() => {
                    return bad("[remote] lists no [[remote.board]]".into())
                }
                Some(r) if r.timeout_ms == 0 || r.connections == 0 => {
                    return bad("[remote] timeout_ms and connections must be positive".into())
                }
                Some(r) if r.health_interval_ms < 100 => {
                    return bad(format!(
                        "[remote] health_interval_ms = {}: at least 100 (default 1000)",
                        r.health_interval_ms
                    ))
                }
                Some(r) => {
                    for b in &r.boards {
                        let port = b.address.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
                        if !matches!(port, Some(Ok(p)) if p > 0) {
                            return bad(format!(
                                "[[remote.board]] {:?}: address {:?} must be HOST:PORT (e.g. \"pynq1.lab:7447\", \"[::1]:7447\")",
                                b.name, b.address
                            ));
                        }
                        vfpga_transport::check_server_name(&b.server_name()).map_err(|e| {
                            ConfigError::Invalid(format!(
                                "[[remote.board]] {:?}: server name {e}; set server_name to the name in its certificate",
                                b.name
                            ))
                        })?;
                    }
                }
            },
        }
        if let Some(l) = &self.library {
            for name in &l.share {
                if !l.allow.iter().any(|a| a == name || a == "*") {
                    return bad(format!(
                        "[library] share names {name:?}, which allow does not: add it to allow"
                    ));
                }
                if l.share.iter().filter(|n| *n == name).count() > 1 {
                    return bad(format!("[library] share names {name:?} twice"));
                }
            }
            if l.min_slice_ms > 3_600_000 {
                return bad("[library] min_slice_ms must be at most an hour (3600000)".into());
            }
        }
        self.socket_mode()?;
        self.socket_gid()?;
        if self.daemon.engine_threads > 256 {
            return bad("[daemon] engine_threads must be at most 256".into());
        }
        if !(1..=63).contains(&d.request_queues) {
            return bad(format!(
                "[device] request_queues = {}: must be 1..=63 (virtio allows 64 queues with the control queue)",
                d.request_queues
            ));
        }
        if !d.queue_size.is_power_of_two() || !(2..=32768).contains(&d.queue_size) {
            return bad(format!(
                "[device] queue_size = {}: must be a power of two in 2..=32768",
                d.queue_size
            ));
        }
        if !(4..=65535).contains(&d.max_segments) {
            return bad(format!(
                "[device] max_segments = {}: must be 4..=65535",
                d.max_segments
            ));
        }
        if !(4096..=(1 << 32)).contains(&d.max_request_bytes) {
            return bad(format!(
                "[device] max_request_bytes = {}: must be 4096..=4294967296",
                d.max_request_bytes
            ));
        }
        if !(1..=65535).contains(&d.max_sessions) {
            return bad(format!(
                "[device] max_sessions = {}: must be 1..=65535",
                d.max_sessions
            ));
        }
        if let Some(lib) = &self.library {
            if let Some(n) = lib.allow.iter().find(|n| *n != "*" && !valid_name(n)) {
                return bad(format!(
                    "[library] allow: {n:?} is not a bitstream name (1-31 characters of [A-Za-z0-9_.-]) or \"*\" (every manifest in dir)"
                ));
            }
        }
        if self.guests.is_empty() {
            return bad("no guest: give at least one [[guest]], --socket or --listen".into());
        }
        if self.stream.max_connections == 0 || self.stream.max_connections > 1024 {
            return bad(format!(
                "[stream] max_connections = {}: must be 1..=1024",
                self.stream.max_connections
            ));
        }
        if self.xen.enable {
            vfpga_xen::service::check_path(&self.xen.path)
                .map_err(|e| ConfigError::Invalid(format!("[xen] path: {e}")))?;
        }
        for (i, g) in self.guests.iter().enumerate() {
            g.policy(d)
                .check(&format!("guest {}:", g.name))
                .map_err(ConfigError::Invalid)?;
            if let Some(n) = g.max_sessions {
                if !(1..=65535).contains(&n) {
                    return bad(format!(
                        "guest {}: max_sessions = {n}: must be 1..=65535",
                        g.name
                    ));
                }
            }
            vfpga_xen::names::guest_name(&g.name).map_err(ConfigError::Invalid)?;
            if let Some(d) = &g.domain {
                vfpga_xen::names::domain_name(d)
                    .map_err(|e| ConfigError::Invalid(format!("guest {}: {e}", g.name)))?;
            }
            if let Some(sock) = &g.socket {
                if sock.as_os_str().len() >= 108 {
                    return bad(format!(
                        "guest {}: socket path {} is longer than a unix socket allows (107 bytes)",
                        g.name,
                        sock.display()
                    ));
                }
            }
            if g.socket.is_none() && g.listen.is_empty() {
                return bad(format!(
                    "guest {}: neither a vhost-user socket nor a listen entry: give socket = PATH or listen = [...]",
                    g.name
                ));
            }
            let mut listens = Vec::new();
            for l in &g.listen {
                let l = crate::stream::Listen::parse(l)
                    .map_err(|e| ConfigError::Invalid(format!("guest {}: {e}", g.name)))?;
                if listens.contains(&l) {
                    return bad(format!("guest {}: {l} is listed twice", g.name));
                }
                match &l {
                    crate::stream::Listen::Tls(_) if self.tls.is_none() => {
                        return bad(format!(
                            "guest {}: {l} needs vfpgad's certificate: give [tls] ca, cert and key",
                            g.name
                        ))
                    }
                    crate::stream::Listen::Vchan if !self.xen.enable => {
                        return bad(format!(
                        "guest {}: vchan needs the dom0 service: [xen] enable = true (or --xen)",
                        g.name
                    ))
                    }
                    _ => {}
                }
                listens.push(l);
            }
            if let Some(n) = &g.tls_name {
                vfpga_transport::check_server_name(n)
                    .map_err(|e| ConfigError::Invalid(format!("guest {}: tls_name {e}", g.name)))?;
            }
            if let Some(o) = self.guests[..i]
                .iter()
                .find(|o| o.name == g.name || (o.socket.is_some() && o.socket == g.socket))
            {
                return bad(format!(
                    "guests {} and {} share a name or a socket",
                    o.name, g.name
                ));
            }
            for (o, l) in self.guests[..i]
                .iter()
                .flat_map(|o| o.listens().into_iter().map(move |l| (o, l)))
            {
                let clash = match (&l, &listens[..]) {
                    (crate::stream::Listen::Unix(p), mine) => mine
                        .iter()
                        .any(|m| matches!(m, crate::stream::Listen::Unix(q) if q == p)),
                    (crate::stream::Listen::Vsock { cid, port }, mine) => mine.iter().any(
                        |m| matches!(m, crate::stream::Listen::Vsock { cid: c, port: p } if c == cid && p == port),
                    ),
                    (crate::stream::Listen::Tls(a), mine) => {
                        o.tls_name() == g.tls_name()
                            && mine.contains(&crate::stream::Listen::Tls(*a))
                    }
                    // A domain's channels are published under its xenstore path, once.
                    (crate::stream::Listen::Vchan, mine) => {
                        o.domain() == g.domain() && mine.contains(&crate::stream::Listen::Vchan)
                    }
                };
                if clash {
                    return bad(format!(
                        "guests {} and {} share {l}: each guest must be told apart (its own socket path, CID, certificate name, or Xen domain)",
                        o.name, g.name
                    ));
                }
            }
            if let Some(p) = &g.socket {
                if listens.contains(&crate::stream::Listen::Unix(p.clone())) {
                    return bad(format!(
                        "guest {}: its vhost-user socket and a unix: listener are the same path",
                        g.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn refuses_with_a_reason() {
        let base = "[[guest]]\nname = \"vm0\"\nsocket = \"/tmp/a\"\n";
        let cases = [
            (
                format!("{base}[daemon]\npoll_us = 10001\n"),
                "poll_us = 10001: at most 10000",
            ),
            (
                format!("{base}[device]\nqueue_size = 100\n"),
                "power of two",
            ),
            (
                format!("{base}[device]\nrequest_queues = 0\n"),
                "request_queues",
            ),
            (
                format!("{base}[[guest]]\nname = \"vm0\"\nsocket = \"/tmp/b\"\n"),
                "share",
            ),
            (
                "[xen]\nenable = true\n[[guest]]\nname = \"a\"\ndomain = \"d1\"\nlisten = [\"vchan\"]\n\
                 [[guest]]\nname = \"d1\"\nlisten = [\"vchan\"]\n"
                    .to_owned(),
                "Xen domain",
            ),
            (
                format!("{base}[daemon]\nengine = \"remote\"\n"),
                "needs a [remote]",
            ),
            (
                format!("{base}[daemon]\nengine = \"pl\"\n"),
                "needs a [library]",
            ),
            (
                format!("{base}[library]\ndir = \"/x\"\nallow = [\"../x\"]\n"),
                "not a bitstream",
            ),
            (String::new(), "no guest"),
            (format!("{base}[daemon]\nsocket_mode = \"999\"\n"), "octal"),
            (
                format!("{base}[daemon]\nsocket_group = \"no-such-group-here\"\n"),
                "no such group",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let e = toml::from_str::<Config>("[device]\nqueue = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"));
        // An unknown engine is refused as the file is read, with the line and the
        // names that exist.
        let e = toml::from_str::<Config>(&format!("{base}[daemon]\nengine = \"gpu\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 5") && e.contains("engine \"gpu\": use \"sim\""),
            "{e}"
        );
    }
}
