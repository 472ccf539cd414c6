//! The embedded MQTT broker (rumqttd) for single-process deployments and the demo.
//!
//! Gateways do not talk to rumqttd directly: the address riskwatch announces is the gateway
//! front's (`riskwatch_ingest::front`), which takes the readings itself — acknowledged only once
//! stored, with back-pressure under overload — and relays everything else to rumqttd, listening
//! on a loopback port of its own.

use anyhow::{bail, Context, Result};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Default port of the embedded broker: not 1883, so it never collides with a real broker.
pub const DEFAULT_PORT: u16 = 18830;

/// The broker keeps the messages of each subscription filter in a log of this many segments …
const SEGMENTS: usize = 8;
/// … of this many bytes each: 64 MiB per filter at most, whatever the burst. rumqttd
/// acknowledges a publish once it is in the log, and drops the oldest segment when the log is
/// full, even if a subscriber has not read it yet; it reports that as a "cursor jump", which
/// riskwatch logs as an error (see [`start`]). Gateways that must never lose a reading under a
/// sustained overload publish to an external broker (`riskwatch run --broker`), where riskwatch
/// acknowledges only what it has stored and back-pressure reaches the gateway.
const SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// Largest MQTT packet accepted, by the broker and the gateway front alike: above the wire
/// format's 256 KiB cap, so oversized payloads reach the decoder and are dead-lettered with a
/// reason instead of costing the gateway its connection.
pub const MAX_PACKET: usize = 1024 * 1024;

/// A started embedded broker.
pub struct EmbeddedBroker {
    /// The announced address, bound but not yet served: the gateway front serves it.
    pub listener: TcpListener,
    /// Where rumqttd itself listens (loopback): for riskwatch's own connections and the front.
    pub internal: SocketAddr,
}

/// Binds `listen` for the gateway front, starts rumqttd on a free loopback port in a background
/// thread, and returns once it accepts connections. The broker lives as long as the process.
/// `set_by` names where the address comes from (`--listen`, `[embedded] listen in t.toml`), for
/// the error when it is taken.
pub fn start(listen: SocketAddr, set_by: &str) -> Result<EmbeddedBroker> {
    let listener = TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e} (is another riskwatch or broker using the port? choose another address with {set_by})"
        )
    })?;
    let internal = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    start_rumqttd(internal)?;
    Ok(EmbeddedBroker { listener, internal })
}

/// Starts rumqttd on `listen`.
fn start_rumqttd(listen: SocketAddr) -> Result<()> {
    let server = ServerSettings {
        name: "riskwatch-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: MAX_PACKET,
            max_inflight_count: 4000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 4000,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("riskwatch-v4".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            match broker.alerts() {
                Ok(alerts) => {
                    let _ = std::thread::Builder::new().name("mqtt-broker-alerts".into()).spawn(move || {
                        while let Ok(batch) = alerts.router_rx.recv() {
                            for alert in batch.iter().filter(|a| a.kind.name() == "cursor_jump") {
                                tracing::error!(
                                    client = %alert.client_id,
                                    detail = %alert.kind.description(),
                                    "the embedded broker dropped messages a subscriber had not read yet (it fell more than the broker's 64 MiB log behind); use an external broker for bursts this large"
                                );
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "no alerts from the embedded broker"),
            }
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("starting the embedded broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("embedded MQTT broker did not start listening on {listen} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    no_delay_on_accepted(listen);
    Ok(())
}

/// Turns Nagle's algorithm off for the connections the broker accepts from now on.
///
/// rumqttd leaves it on, so a message written to a subscriber shortly after another one waits
/// until the subscriber acknowledges the first, and subscribers delay their TCP
/// acknowledgements by up to 40 ms: every run of `scripts/bench.sh` saw a few alerts arrive
/// ~40 ms late at any rate. Linux gives every accepted socket the listening socket's
/// `TCP_NODELAY`, and rumqttd offers no hook for it, so the option is set on the listening
/// socket, found among this process's file descriptors by its address. Best effort: failing
/// costs latency, never correctness.
fn no_delay_on_accepted(listen: SocketAddr) {
    let mut set = 0;
    find_socket(|sock| {
        if sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(listen) && sock.set_tcp_nodelay(true).is_ok() {
            set += 1;
        }
        None::<()>
    });
    if set == 0 {
        tracing::warn!(%listen, "could not turn off Nagle's algorithm on the embedded broker's listener; alerts may be delayed up to 40 ms");
    }
}

/// Shows `f` each socket open in this process until it returns `Some`.
fn find_socket<T>(mut f: impl FnMut(socket2::SockRef<'_>) -> Option<T>) -> Option<T> {
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    fds.flatten().filter_map(|e| e.file_name().to_str()?.parse::<std::os::fd::RawFd>().ok()).find_map(|fd| {
        // SAFETY: `fd` is open in this process (listed just now) and is only borrowed for a few
        // socket calls; on a descriptor closed meanwhile, or not a socket, they fail harmlessly.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        f(socket2::SockRef::from(&fd))
    })
}

/// A free TCP port on 127.0.0.1 (for the demo's fallback when the default port is taken).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection the embedded broker accepts has Nagle's algorithm off, so an alert
    /// written right after another one reaches its subscriber at once (not after the
    /// subscriber's delayed acknowledgement, up to 40 ms).
    #[test]
    fn accepted_connections_send_without_waiting_for_acknowledgements() {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
        start_rumqttd(listen).unwrap();
        let client = TcpStream::connect(listen).unwrap();
        let ours = client.local_addr().unwrap();
        // The broker's end of this connection, found in this process by its addresses.
        let deadline = Instant::now() + Duration::from_secs(10);
        let nodelay = loop {
            let found = find_socket(|sock| {
                let local = sock.local_addr().ok()?.as_socket()?;
                let peer = sock.peer_addr().ok()?.as_socket()?;
                (local == listen && peer == ours).then(|| sock.tcp_nodelay().unwrap())
            });
            if let Some(n) = found {
                break n;
            }
            assert!(Instant::now() < deadline, "the broker never accepted the connection");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(nodelay, "the broker's side of the connection delays small writes (Nagle's algorithm is on)");
    }
}
