//! Values built from files that are read again when the files change: certificates, keys, webhook
//! tokens, JWKS. Kubernetes updates a mounted secret in place (an atomic swap of a symlink), so a
//! rotation is a file change, and the gateway takes it without a restart and without dropping a
//! connection: only what is built next (a TLS handshake, a check of a token) sees the new value.
//!
//! The files are polled rather than watched with inotify: a swapped symlink is not reliably reported,
//! and reading a few small files every few seconds costs nothing. A change is taken only when the new
//! files parse; otherwise the previous value stays and the problem is logged (never the content).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

/// The current value built from some files, replaced when they change and still parse.
pub struct Reloading<T> {
    current: ArcSwap<T>,
    /// How many times the value was replaced since start.
    reloads: AtomicU64,
}

impl<T> Reloading<T> {
    /// A fixed value, never reloaded (for values given inline, and for tests).
    pub fn fixed(value: T) -> Arc<Reloading<T>> {
        Arc::new(Reloading {
            current: ArcSwap::from_pointee(value),
            reloads: AtomicU64::new(0),
        })
    }

    /// The value now; later reloads do not change what was returned.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// How many times the files changed and the new value was taken.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }
}

/// What a reloading value is built from: named files, read together.
pub struct Source {
    /// Names the value in logs and errors (e.g. `grpc.tls`); never its content.
    pub what: &'static str,
    pub files: Vec<PathBuf>,
}

impl Source {
    fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        self.files
            .iter()
            .map(|file| {
                std::fs::read(file)
                    .map_err(|e| format!("{}: cannot read {}: {e}", self.what, file.display()))
            })
            .collect()
    }
}

/// Builds the value from `source`'s files now (an error stops the start) and, every `interval` until
/// `stop`, again whenever their bytes change. `build` gets each file's bytes, in order, and must not
/// put them into its error.
pub fn watch<T, F>(
    source: Source,
    interval: Duration,
    stop: CancellationToken,
    build: F,
) -> Result<Arc<Reloading<T>>, String>
where
    T: Send + Sync + 'static,
    F: Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync + 'static,
{
    let contents = source.read()?;
    let value = build(&contents).map_err(|e| format!("{}: {e}", source.what))?;
    let reloading = Arc::new(Reloading {
        current: ArcSwap::from_pointee(value),
        reloads: AtomicU64::new(0),
    });
    let handle = reloading.clone();
    tokio::spawn(async move {
        let mut seen = fingerprint(&contents);
        // The last problem reported, so a broken file is logged once, not every tick.
        let mut reported: Option<String> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let outcome = source.read().and_then(|contents| {
                let now = fingerprint(&contents);
                if now == seen {
                    return Ok(None);
                }
                build(&contents).map(|value| Some((value, now)))
            });
            match outcome {
                Ok(None) => {}
                Ok(Some((value, now))) => {
                    handle.current.store(Arc::new(value));
                    handle.reloads.fetch_add(1, Ordering::Relaxed);
                    seen = now;
                    reported = None;
                    tracing::info!(what = source.what, "reloaded from its changed files");
                }
                Err(problem) => {
                    if reported.as_ref() != Some(&problem) {
                        tracing::warn!(
                            what = source.what,
                            %problem,
                            "changed files not taken; the previous value stays in use"
                        );
                        reported = Some(problem);
                    }
                }
            }
        }
    });
    Ok(reloading)
}

/// A digest of the files' contents: equal contents, equal digests.
fn fingerprint(contents: &[Vec<u8>]) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for content in contents {
        context.update(&(content.len() as u64).to_be_bytes());
        context.update(content);
    }
    context.finish().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(contents: &[Vec<u8>]) -> Result<u32, String> {
        std::str::from_utf8(&contents[0])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "not a number".to_owned())
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..200 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn a_changed_file_is_taken_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("value");
        std::fs::write(&file, "1").unwrap();
        let stop = CancellationToken::new();
        let source = Source {
            what: "test",
            files: vec![file.clone()],
        };
        let value = watch(source, Duration::from_millis(10), stop.clone(), number).unwrap();
        assert_eq!(*value.current(), 1);

        std::fs::write(&file, "2").unwrap();
        until(|| *value.current() == 2).await;
        assert_eq!(value.reloads(), 1);

        std::fs::write(&file, "two").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            *value.current(),
            2,
            "a broken file keeps the previous value"
        );

        // Replaced the way Kubernetes does it: a new file renamed over the old one.
        let next = dir.path().join("value.next");
        std::fs::write(&next, "3").unwrap();
        std::fs::rename(&next, &file).unwrap();
        until(|| *value.current() == 3).await;
        assert_eq!(value.reloads(), 2);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_broken_file_at_start_is_an_error_naming_the_value_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("value");
        std::fs::write(&file, "s3cr3t").unwrap();
        let source = Source {
            what: "grpc.tls",
            files: vec![file],
        };
        let e = watch(
            source,
            Duration::from_secs(1),
            CancellationToken::new(),
            number,
        )
        .err()
        .unwrap();
        assert!(e.starts_with("grpc.tls: "), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let missing = Source {
            what: "grpc.tls",
            files: vec![PathBuf::from("/nonexistent/cert.pem")],
        };
        let e = watch(
            missing,
            Duration::from_secs(1),
            CancellationToken::new(),
            number,
        )
        .err()
        .unwrap();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
