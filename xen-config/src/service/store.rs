//! xenstore operations with a time limit and the path in the error.

use std::collections::HashMap;
use std::io;

use xenstore_rs::tokio::XsTokio;
use xenstore_rs::AsyncXs;

use super::{ServiceError, OP_TIMEOUT};

/// xenstore operations with a time limit and the path in the error.
pub(super) struct Store {
    pub(super) xs: XsTokio,
}

impl Store {
    pub(super) async fn connect() -> Result<Self, ServiceError> {
        let socket =
            std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".to_string());
        match tokio::time::timeout(OP_TIMEOUT, XsTokio::new()).await {
            Ok(Ok(xs)) => Ok(Self { xs }),
            Ok(Err(source)) => Err(ServiceError::Connect { socket, source }),
            Err(_) => Err(ServiceError::Connect {
                socket,
                source: io::Error::new(io::ErrorKind::TimedOut, "no answer"),
            }),
        }
    }

    pub(super) async fn op<T>(
        op: &'static str,
        path: &str,
        f: impl std::future::Future<Output = io::Result<T>>,
    ) -> Result<T, ServiceError> {
        let r = match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
        };
        r.map_err(|source| ServiceError::Store {
            op,
            path: path.to_owned(),
            source,
        })
    }

    pub(super) async fn write(&self, path: &str, value: &str) -> Result<(), ServiceError> {
        Self::op("write", path, self.xs.write(path, value)).await
    }

    pub(super) async fn read(&self, path: &str) -> Result<Option<String>, ServiceError> {
        match Self::op("read", path, self.xs.read(path)).await {
            Ok(v) => Ok(Some(v.into_string())),
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn is_empty(&self, path: &str) -> Result<bool, ServiceError> {
        match Self::op("directory", path, self.xs.directory(path)).await {
            Ok(children) => Ok(children.is_empty()),
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn rm(&self, path: &str) -> Result<(), ServiceError> {
        match Self::op("rm", path, self.xs.rm(path)).await {
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(())
            }
            r => r,
        }
    }

    /// Domain name → the ids of the domains of that name, from
    /// `/local/domain/*/name` (two while a dying domain's entries remain beside its
    /// successor's). A domain whose entries are being removed while we look is skipped.
    pub(super) async fn domains(&self) -> Result<HashMap<String, Vec<u32>>, ServiceError> {
        let ids = Self::op(
            "directory",
            "/local/domain",
            self.xs.directory("/local/domain"),
        )
        .await?;
        let mut out: HashMap<String, Vec<u32>> = HashMap::with_capacity(ids.len());
        for id in ids {
            let Ok(domid) = id.parse::<u32>() else {
                continue;
            };
            let path = format!("/local/domain/{domid}/name");
            match Self::op("read", &path, self.xs.read(&path)).await {
                Ok(name) => out.entry(name.into_string()).or_default().push(domid),
                Err(ServiceError::Store { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
