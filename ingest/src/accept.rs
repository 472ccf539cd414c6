//! The accept loop of riskwatch's own TCP listeners (the gateway front, the SL 651 source):
//! each connection is served on a task of its own until shutdown; then the loop stops accepting,
//! lets go of what it shares with the connections and waits for every one of them to close
//! (each first finishes handing over and acknowledging what it took). A listener may cap the
//! connections it serves at once: beyond the cap a new connection is handed to a `refuse`
//! callback (which closes it) instead of being served.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves connections accepted on `listener` with `serve` until `shutdown` turns true, then
/// drops `serve` (and with it the senders it holds) and waits for the connections. `what` names
/// the listener in logs ("the gateway front").
pub(crate) async fn serve_until_shutdown<F, Fut>(
    listener: std::net::TcpListener,
    what: &'static str,
    shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_at_most(listener, what, usize::MAX, |_, _| {}, shutdown, serve).await;
}

/// As [`serve_until_shutdown`], serving at most `max` connections at once: a connection
/// accepted while `max` are being served is given to `refuse` (and closed when it drops it).
pub(crate) async fn serve_at_most<F, Fut, R>(
    listener: std::net::TcpListener,
    what: &'static str,
    max: usize,
    mut refuse: R,
    mut shutdown: watch::Receiver<bool>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    R: FnMut(TcpStream, SocketAddr),
{
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "{what} cannot use its listening socket");
            return;
        }
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Connections that ended since the last look no longer count.
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= max {
                        refuse(stream, peer);
                    } else {
                        connections.spawn(serve(stream, peer, shutdown.clone()));
                    }
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "{what} could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(serve);
    while connections.join_next().await.is_some() {}
}
