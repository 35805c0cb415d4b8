//! Starting the daemon's long-lived threads so that they run before the caller goes on.
//!
//! A thread that the system schedules late does its start-up work (the standard
//! library records its name, for instance) whenever it first runs: on a loaded host
//! that can be seconds later, in the middle of serving guests. Starting each one and
//! waiting until it runs keeps all of that before `vfpgad` reports itself ready, and
//! the request path free of it.

use std::io;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

/// Spawns thread `name` running `f`, and returns once it has started.
pub fn spawn_running<T, F>(name: String, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let started = Arc::new(Barrier::new(2));
    let theirs = started.clone();
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        theirs.wait();
        f()
    })?;
    started.wait();
    Ok(handle)
}
