//! The service thread: connect, publish, watch `@introduceDomain` and
//! `@releaseDomain`, rescan; reconnect when xenstore goes away.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::AsyncWatch;

use super::record::Record;
use super::store::Store;
use super::{
    Command, DomainEvents, ServiceError, ServiceGuest, ServiceInfo, RECONNECT_FIRST, RECONNECT_MAX,
    RELEASE_FOLLOW_UPS, RESCAN_EVERY,
};

/// What the watch forwarders report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Introduced,
    Released,
    Lost,
}

/// Forwards a watch's events (coalescing is up to the receiver) and reports the end of
/// the stream. The caller aborts the task when it gives up the connection: xenstore-rs
/// does not always end the stream when the connection breaks.
async fn forward(
    xs: &XsTokio,
    path: &'static str,
    kind: Event,
    tx: mpsc::UnboundedSender<Event>,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let mut w = Store::op("watch", path, xs.watch(path)).await?;
    Ok(tokio::spawn(async move {
        while w.next().await.is_some() {
            if tx.send(kind).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Lost);
    }))
}

/// Aborts the watch forwarders when a connection ends, however it ends.
struct Forwarders(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Forwarders {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// How one connection to xenstore ended.
enum End {
    Stopped,
    Lost(ServiceError),
}

/// The service thread: connect, publish, watch; reconnect when xenstore goes away.
pub(super) async fn run(
    info: ServiceInfo,
    guests: Vec<ServiceGuest>,
    events: Arc<dyn DomainEvents>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: std::sync::mpsc::Sender<Result<(), ServiceError>>,
) {
    let n = guests.len();
    let mut rec = Record {
        info,
        guests,
        domids: vec![None; n],
        alive_at: vec![Instant::now(); n],
        dropped: vec![0; n],
        events,
    };
    let mut state = "running";
    let mut ready = Some(ready);
    let mut backoff = RECONNECT_FIRST;
    loop {
        match connection(&mut rec, &mut state, &mut commands, &mut ready).await {
            End::Stopped => return,
            End::Lost(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                warn!("xenstore: {e}; reconnecting in {backoff:?}");
            }
        }
        // Wait before reconnecting, but obey a stop meanwhile.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            cmd = commands.recv() => match cmd {
                Some(Command::State(s)) => state = s,
                Some(Command::Stop) | None => return,
            },
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One connection's life. Domain changes seen while disconnected are applied at the
/// first scan after reconnecting.
async fn connection(
    rec: &mut Record,
    state: &mut &'static str,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    ready: &mut Option<std::sync::mpsc::Sender<Result<(), ServiceError>>>,
) -> End {
    let xs = match Store::connect().await {
        Ok(xs) => xs,
        Err(e) => return End::Lost(e),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut forwarders = Forwarders(Vec::new());
    let setup = async {
        rec.publish(&xs, "starting").await?;
        for (path, kind) in [
            ("@introduceDomain", Event::Introduced),
            ("@releaseDomain", Event::Released),
        ] {
            let task = forward(&xs.xs, path, kind, tx.clone()).await?;
            forwarders.0.push(task);
        }
        rec.rescan(&xs).await?;
        xs.write(&format!("{}/daemon/state", rec.info.path), state)
            .await
    };
    if let Err(e) = setup.await {
        return End::Lost(e);
    }
    drop(tx);
    info!(path = %rec.info.path, "registered in xenstore");
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    let mut follow_ups: Vec<tokio::time::Instant> = Vec::new();
    loop {
        let now = tokio::time::Instant::now();
        let next = follow_ups
            .iter()
            .copied()
            .min()
            .unwrap_or(now + RESCAN_EVERY);
        let scan = tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Lost) | None => {
                    return End::Lost(ServiceError::Store {
                        op: "watch",
                        path: "@releaseDomain".into(),
                        source: io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
                    })
                }
                Some(ev) => {
                    debug!(?ev, "xenstore watch");
                    if ev == Event::Released {
                        follow_ups.extend(RELEASE_FOLLOW_UPS.iter().map(|d| now + *d));
                    }
                    // Several events waiting need one scan.
                    while let Ok(more) = rx.try_recv() {
                        if more == Event::Lost {
                            return End::Lost(ServiceError::Store {
                                op: "watch",
                                path: "@releaseDomain".into(),
                                source: io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
                            });
                        }
                        if more == Event::Released {
                            follow_ups.extend(RELEASE_FOLLOW_UPS.iter().map(|d| now + *d));
                        }
                    }
                    true
                }
            },
            () = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                follow_ups.retain(|t| *t > now);
                true
            }
            cmd = commands.recv() => match cmd {
                Some(Command::State(s)) => {
                    *state = s;
                    let path = format!("{}/daemon/state", rec.info.path);
                    if let Err(e) = xs.write(&path, s).await {
                        return End::Lost(e);
                    }
                    false
                }
                Some(Command::Stop) | None => {
                    if let Err(e) = rec.unpublish(&xs).await {
                        warn!("cannot remove the xenstore record: {e}");
                    } else {
                        info!(path = %rec.info.path, "unregistered from xenstore");
                    }
                    return End::Stopped;
                }
            },
        };
        if scan {
            if let Err(e) = rec.rescan(&xs).await {
                return End::Lost(e);
            }
        }
    }
}
