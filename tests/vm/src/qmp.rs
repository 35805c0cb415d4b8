//! The one QMP client of the VM tests: `run-guest.sh` attaches its devices with it
//! (through the `vfpga-qmp` binary) and the tests drive QEMU with it (device_del,
//! device_add, events).
//!
//! QMP is one JSON object a line: a greeting (`{"QMP": ...}`), then for each command a
//! reply (`{"return": ...}` or `{"error": {"class", "desc"}}`) carrying the command's
//! `id`, and asynchronous events (`{"event": NAME, ...}`) anywhere in between. Events
//! read while waiting for a reply are kept for [`Qmp::wait_event`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The longest line read from QEMU; its replies are a few KiB.
pub const MAX_LINE: usize = 1 << 20;

/// How long a command may take to be answered.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached in time.
    #[error("cannot connect to QMP at {path}: {source} (is QEMU running with -qmp unix:{path},server=on?)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP: {0}")]
    Io(#[from] io::Error),
    /// QEMU closed the connection (it exited, or another client holds QMP).
    #[error("QEMU closed QMP{}", if .0.is_empty() { String::new() } else { format!(" in the middle of a line: {:?}", .0) })]
    Closed(String),
    /// A line that is not a JSON object.
    #[error("QMP sent something that is not a JSON object: {line:?} ({reason})")]
    Garbage {
        /// The line (at most its first 200 characters).
        line: String,
        /// Why it is not one.
        reason: String,
    },
    /// A line longer than [`MAX_LINE`].
    #[error("QMP sent a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The first message was not QMP's greeting.
    #[error("not a QMP greeting: {0}")]
    NoGreeting(String),
    /// A reply to another command than the one sent.
    #[error("QMP answered command {got} while command {want} was waited for")]
    WrongId {
        /// The id sent.
        want: u64,
        /// The id in the reply.
        got: String,
    },
    /// QEMU refused the command.
    #[error("QMP {command} failed: {desc} ({class})")]
    Failed {
        /// The command.
        command: String,
        /// QEMU's error class, e.g. GenericError.
        class: String,
        /// QEMU's message.
        desc: String,
    },
    /// Nothing came in time.
    #[error("no {what} from QMP within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// A device's description is not a JSON object with a "driver".
    #[error("device {0}: give a JSON object with \"driver\" and \"id\", as device_add takes it")]
    BadDevice(String),
}

/// One message from QEMU.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// The greeting (its `QMP` member).
    Greeting(Value),
    /// A command's success: its `return` value and `id`.
    Return {
        /// The command's result.
        value: Value,
        /// The id sent with the command, if any.
        id: Option<Value>,
    },
    /// A command's failure.
    Error {
        /// QEMU's error class.
        class: String,
        /// QEMU's message.
        desc: String,
        /// The id sent with the command, if any.
        id: Option<Value>,
    },
    /// An event: its name and the whole object.
    Event {
        /// e.g. DEVICE_DELETED.
        name: String,
        /// The whole message (`data`, `timestamp`).
        body: Value,
    },
}

fn garbage(line: &str, reason: impl std::fmt::Display) -> QmpError {
    QmpError::Garbage {
        line: line.chars().take(200).collect(),
        reason: reason.to_string(),
    }
}

fn timeout(what: &str, after: Duration) -> QmpError {
    QmpError::Timeout {
        what: what.to_owned(),
        after,
    }
}

/// Reads one line of QMP (without its end) as a message.
pub fn parse(line: &str) -> Result<Message, QmpError> {
    let v: Value = serde_json::from_str(line).map_err(|e| garbage(line, e))?;
    let Value::Object(mut o) = v else {
        return Err(garbage(line, "not an object"));
    };
    let id = o.remove("id");
    if let Some(g) = o.remove("QMP") {
        return Ok(Message::Greeting(g));
    }
    if let Some(value) = o.remove("return") {
        return Ok(Message::Return { value, id });
    }
    if let Some(e) = o.remove("error") {
        let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        return match (text("class"), text("desc")) {
            (Some(class), Some(desc)) => Ok(Message::Error { class, desc, id }),
            _ => Err(garbage(line, "an error without class and desc")),
        };
    }
    if let Some(name) = o.get("event").and_then(Value::as_str).map(str::to_owned) {
        return Ok(Message::Event {
            name,
            body: Value::Object(o),
        });
    }
    Err(garbage(line, "neither greeting, return, error nor event"))
}

/// Events kept for `wait_event`, at most.
pub const MAX_EVENTS: usize = 256;

/// `timeout` from now; a timeout too long to add means a day.
fn far(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// A QMP connection, capabilities negotiated.
#[derive(Debug)]
pub struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
    /// A line read in part when a read timed out.
    pending: Vec<u8>,
    events: VecDeque<(String, Value)>,
    next_id: u64,
}

impl Qmp {
    /// Connects to `path`, waiting up to `timeout` for QEMU to create and serve it, and
    /// negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = far(timeout);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                // QEMU has not made the socket yet, or not listened on it yet: it
                // creates it as it starts, with no event to wait on.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        };
        Self::over(s)
    }

    /// QMP over a connected stream: reads the greeting and negotiates capabilities.
    pub fn over(s: UnixStream) -> Result<Self, QmpError> {
        let r = BufReader::new(s.try_clone()?);
        let mut q = Self {
            w: s,
            r,
            pending: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
        };
        match q.message(Instant::now() + REPLY_TIMEOUT)? {
            Some(Message::Greeting(_)) => {}
            Some(other) => return Err(QmpError::NoGreeting(format!("{other:?}"))),
            None => return Err(timeout("greeting", REPLY_TIMEOUT)),
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// Reads the next message, waiting until `deadline`; None when it passed.
    fn message(&mut self, deadline: Instant) -> Result<Option<Message>, QmpError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.r.get_ref().set_read_timeout(Some(left))?;
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if buf.is_empty() {
                let part = String::from_utf8_lossy(&self.pending).into_owned();
                return Err(QmpError::Closed(part));
            }
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if self.pending.len() + take > MAX_LINE {
                return Err(QmpError::LineTooLong);
            }
            self.pending.extend_from_slice(&buf[..take]);
            self.r.consume(take);
            if end {
                let line = std::mem::take(&mut self.pending);
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if !line.is_empty() {
                    return parse(line).map(Some);
                }
            }
        }
    }

    /// Runs `command` with `arguments`; its `return` value. Events that come first
    /// are kept for [`Qmp::wait_event`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut m = Map::new();
        m.insert("execute".into(), command.into());
        if let Some(a) = arguments {
            m.insert("arguments".into(), a);
        }
        m.insert("id".into(), id.into());
        let mut line = Value::Object(m).to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes())?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let Some(message) = self.message(deadline)? else {
                return Err(timeout(&format!("reply to {command}"), REPLY_TIMEOUT));
            };
            let (reply_id, result) = match message {
                Message::Event { name, body } => {
                    self.keep(name, body);
                    continue;
                }
                Message::Greeting(g) => {
                    return Err(QmpError::NoGreeting(format!("a second greeting {g}")))
                }
                Message::Return { value, id } => (id, Ok(value)),
                Message::Error { class, desc, id } => (
                    id,
                    Err(QmpError::Failed {
                        command: command.to_owned(),
                        class,
                        desc,
                    }),
                ),
            };
            if reply_id != Some(json!(id)) {
                return Err(QmpError::WrongId {
                    want: id,
                    got: reply_id.map_or_else(|| "without id".into(), |v| v.to_string()),
                });
            }
            return result;
        }
    }

    /// Keeps an event for a later `wait_event`: the latest [`MAX_EVENTS`], so a peer
    /// sending events without end cannot fill memory.
    fn keep(&mut self, name: String, body: Value) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((name, body));
    }

    /// Waits for the event `name` (one read earlier counts); the whole event.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Value, QmpError> {
        if let Some(i) = self.events.iter().position(|(n, _)| n == name) {
            return Ok(self.events.remove(i).map(|(_, b)| b).unwrap_or_default());
        }
        let deadline = far(timeout);
        loop {
            match self.message(deadline)? {
                Some(Message::Event { name: n, body }) if n == name => return Ok(body),
                Some(Message::Event { name: n, body }) => self.keep(n, body),
                Some(other) => {
                    return Err(garbage(
                        &format!("{other:?}"),
                        "a reply no command asked for",
                    ))
                }
                None => {
                    return Err(QmpError::Timeout {
                        what: format!("event {name}"),
                        after: timeout,
                    })
                }
            }
        }
    }

    /// The chardevs among `labels` not connected to their socket yet.
    pub fn disconnected(&mut self, labels: &[&str]) -> Result<Vec<String>, QmpError> {
        let r = self.execute("query-chardev", None)?;
        let all = r
            .as_array()
            .ok_or_else(|| garbage(&r.to_string(), "query-chardev did not return a list"))?;
        Ok(labels
            .iter()
            .filter(|l| {
                all.iter().any(|c| {
                    c.get("label").and_then(Value::as_str) == Some(l)
                        && c.get("filename")
                            .and_then(Value::as_str)
                            .is_some_and(|f| f.starts_with("disconnected:"))
                })
            })
            .map(|l| (*l).to_owned())
            .collect())
    }

    /// Waits until every chardev of `devices` (chardev label, device_add arguments)
    /// is connected, adds the devices in order, and starts the guest (`cont`).
    /// `waiting` is told once, after two seconds, which chardevs are still waited for.
    /// Fails after `timeout`.
    pub fn attach(
        &mut self,
        devices: &[(String, Value)],
        timeout: Duration,
        mut waiting: impl FnMut(&[String]),
    ) -> Result<(), QmpError> {
        for (_, d) in devices {
            if d.get("driver").and_then(Value::as_str).is_none() {
                return Err(QmpError::BadDevice(d.to_string()));
            }
        }
        let labels: Vec<&str> = devices.iter().map(|(c, _)| c.as_str()).collect();
        let start = Instant::now();
        let mut said = false;
        loop {
            let down = self.disconnected(&labels)?;
            if down.is_empty() {
                break;
            }
            if start.elapsed() >= timeout {
                return Err(self::timeout(
                    &format!("connection of chardevs {}", down.join(", ")),
                    timeout,
                ));
            }
            if !said && start.elapsed() >= Duration::from_secs(2) {
                waiting(&down);
                said = true;
            }
            // QEMU reports no event when a chardev connects: ask again shortly.
            std::thread::sleep(Duration::from_millis(100));
        }
        for (_, d) in devices {
            self.execute("device_add", Some(d.clone()))?;
        }
        self.execute("cont", None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Read;

    #[test]
    fn messages_are_told_apart() {
        assert!(matches!(
            parse(r#"{"QMP": {"version": {}, "capabilities": ["oob"]}}"#).unwrap(),
            Message::Greeting(_)
        ));
        assert_eq!(
            parse(r#"{"return": {}, "id": 3}"#).unwrap(),
            Message::Return {
                value: json!({}),
                id: Some(json!(3))
            }
        );
        assert_eq!(
            parse(r#"{"error": {"class": "GenericError", "desc": "no \"x\""}}"#).unwrap(),
            Message::Error {
                class: "GenericError".into(),
                desc: "no \"x\"".into(),
                id: None
            }
        );
        let Message::Event { name, body } =
            parse(r#"{"timestamp": {"seconds": 1}, "event": "DEVICE_DELETED", "data": {"device": "vfpgadev0"}}"#)
                .unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(name, "DEVICE_DELETED");
        assert_eq!(body["data"]["device"], "vfpgadev0");
    }

    #[test]
    fn garbage_is_refused_with_the_line() {
        for line in [
            "",
            "{",
            "{\"return\": {}",
            "[1, 2]",
            "\"return\"",
            "{\"hello\": 1}",
            "{\"error\": {\"desc\": 5}}",
            "{\"event\": 7}",
            "\u{0}\u{1}\u{2}",
            "{\"return\": {}} trailing",
        ] {
            let e = parse(line).unwrap_err();
            assert!(matches!(e, QmpError::Garbage { .. }), "{line:?}: {e}");
        }
        let long = format!("{{\"x\": \"{}\"}}", "a".repeat(10_000));
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.len() < 400, "the line is cut in the message: {e}");
    }

    /// A peer that sends `script` (lines a QEMU would not send), then closes its
    /// side if `close`, and keeps reading; what it read.
    fn peer(script: &'static [u8], close: bool) -> (UnixStream, std::thread::JoinHandle<Vec<u8>>) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            b.write_all(script).unwrap();
            if close {
                b.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut got = Vec::new();
            let _ = b.read_to_end(&mut got);
            got
        });
        (a, t)
    }

    #[test]
    fn hostile_peers_give_clear_errors() {
        // No greeting, a line cut by the close, garbage, a reply to another command.
        let cases: [(&[u8], &str); 5] = [
            (b"", "QEMU closed QMP"),
            (b"{\"QMP\": {}}\n{\"retu", "in the middle of a line"),
            (b"{\"return\": {}}\n", "not a QMP greeting"),
            (b"{\"QMP\": {}}\nnonsense\n", "not a JSON object"),
            (
                b"{\"QMP\": {}}\n{\"return\": {}, \"id\": 99}\n",
                "answered command 99",
            ),
        ];
        for (script, want) in cases {
            let (s, t) = peer(script, true);
            let e = Qmp::over(s).unwrap_err().to_string();
            assert!(e.contains(want), "{script:?}: {e}");
            t.join().unwrap();
        }
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 << 10];
            // Until the client gives up and closes.
            while b.write_all(&chunk).is_ok() {}
        });
        let e = Qmp::over(a).unwrap_err();
        assert!(matches!(e, QmpError::LineTooLong), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn a_flood_of_events_keeps_only_the_latest() {
        let mut script = b"{\"QMP\": {}}\n{\"return\": {}, \"id\": 1}\n".to_vec();
        for i in 0..MAX_EVENTS + 50 {
            script.extend_from_slice(format!("{{\"event\": \"E{i}\"}}\n").as_bytes());
        }
        script.extend_from_slice(b"{\"return\": {}, \"id\": 2}\n");
        let (s, _t) = peer(Box::leak(script.into_boxed_slice()), false);
        let mut q = Qmp::over(s).unwrap();
        q.execute("stop", None).unwrap();
        assert_eq!(q.events.len(), MAX_EVENTS);
        assert!(
            q.wait_event("E0", Duration::ZERO).is_err(),
            "the oldest went"
        );
        let last = format!("E{}", MAX_EVENTS + 49);
        q.wait_event(&last, Duration::ZERO).unwrap();
    }

    #[test]
    fn events_before_a_reply_are_kept_and_errors_carry_qemus_message() {
        let (s, t) = peer(
            b"{\"QMP\": {}}\n{\"return\": {}, \"id\": 1}\n\
              {\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"d0\"}}\r\n\
              {\"error\": {\"class\": \"GenericError\", \"desc\": \"Duplicate device ID\"}, \"id\": 2}\n",
            false,
        );
        let mut q = Qmp::over(s).unwrap();
        let e = q
            .execute("device_add", Some(json!({"driver": "x", "id": "d0"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "QMP device_add failed: Duplicate device ID (GenericError)"
        );
        let ev = q
            .wait_event("DEVICE_DELETED", Duration::from_secs(1))
            .unwrap();
        assert_eq!(ev["data"]["device"], "d0");
        drop(q);
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        let lines: Vec<Value> = sent
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], json!({"execute": "qmp_capabilities", "id": 1}));
        assert_eq!(
            lines[1],
            json!({"execute": "device_add", "arguments": {"driver": "x", "id": "d0"}, "id": 2})
        );
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (s, t) = peer(b"{\"QMP\": {}}\n{\"return\": {}, \"id\": 1}\n", false);
        let mut q = Qmp::over(s).unwrap();
        let e = q
            .wait_event("DEVICE_DELETED", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no event DEVICE_DELETED from QMP within 200ms"),
            "{e}"
        );
        drop(q);
        t.join().unwrap();
    }
}
