//! The accept loop of riskwatch's own TCP listeners (the gateway front, the SL 651 source):
//! each connection is served on a task of its own until shutdown; then the loop stops accepting,
//! lets go of what it shares with the connections and waits for every one of them to close
//! (each first finishes handing over and acknowledging what it took).

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
    mut shutdown: watch::Receiver<bool>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
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
                    connections.spawn(serve(stream, peer, shutdown.clone()));
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
