//! The listener: accepts connections, optionally does the TLS handshake, and serves the router
//! over HTTP/1.1 or HTTP/2 with hyper. Each connection gets a [`ConnectionHandle`] so that a
//! handler can close its own connection (the `reset` fault) or wait for it to go away (`hang`).

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

/// A TLS client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, connections get this long to finish their requests before they are cut.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A request's view of its connection.
#[derive(Clone)]
pub(crate) struct ConnectionHandle {
    reset: Arc<Notify>,
    closed: watch::Receiver<()>,
}

impl ConnectionHandle {
    /// Closes the connection without writing anything more: the client sees the connection
    /// end (TCP FIN; with TLS, no `close_notify`) instead of an answer. On HTTP/2 every
    /// stream of the connection is cut.
    pub(crate) fn reset(&self) {
        self.reset.notify_one();
    }

    /// Resolves once the connection is gone.
    pub(crate) async fn closed(&self) {
        let mut closed = self.closed.clone();
        // The sender lives exactly as long as the connection task; only its drop ends this.
        while closed.changed().await.is_ok() {}
    }
}

/// The running server.
pub(crate) struct Server {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) fn spawn(listener: TcpListener, tls: Option<TlsAcceptor>, router: Router) -> Server {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, tls, router, shutdown_rx));
        Server { shutdown, task }
    }

    /// Stops accepting, lets connections finish for a moment, then cuts the rest.
    pub(crate) async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Cuts everything at once (for `Drop`).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    // Connections live in this set so that aborting the server (or dropping it) ends them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = serve_connection(
                        stream, peer, tls.clone(), router.clone(), shutdown.clone());
                    connections.spawn(connection);
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!("cutting {} connections still open", connections.len());
    }
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(stream, peer, router, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_io(stream, peer, router, shutdown).await,
                Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, peer: SocketAddr, router: Router, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let reset = Arc::new(Notify::new());
    // Dropped when this function returns, which is what `ConnectionHandle::closed` waits for.
    let (_closed_tx, closed) = watch::channel(());
    let handle = ConnectionHandle {
        reset: Arc::clone(&reset),
        closed,
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let extensions = request.extensions_mut();
        // What `into_make_service_with_connect_info` would provide, for handlers that want it.
        extensions.insert(ConnectInfo(peer));
        extensions.insert(handle.clone());
        let router = router.clone();
        // The router's error type is `Infallible`: every failure is an HTTP answer.
        async move { router.oneshot(request).await }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    tokio::select! {
        result = connection.as_mut() => {
            log_end(peer, result);
            return;
        }
        _ = reset.notified() => {
            debug!(%peer, "connection reset by a fault");
            return;
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    // Shutting down: finish the requests in flight, take no new ones.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        result = connection.as_mut() => log_end(peer, result),
        _ = reset.notified() => {}
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        debug!(%peer, "connection ended: {e}");
    }
}
