//! The embedded MQTT broker (rumqttd) for single-process deployments and the demo.

use anyhow::{bail, Context, Result};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Default port of the embedded broker: not 1883, so it never collides with a real broker.
pub const DEFAULT_PORT: u16 = 18830;

/// Starts rumqttd on `listen` in a background thread and returns once it accepts connections.
/// The broker lives as long as the process.
pub fn start(listen: SocketAddr) -> Result<()> {
    if TcpListener::bind(listen).is_err() {
        bail!("cannot listen on {listen}: the port is in use (choose another with --port)");
    }
    let server = ServerSettings {
        name: "riskwatch-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            // Above the wire format's 256 KiB cap, so oversized payloads reach the decoder and
            // are dead-lettered with a reason instead of costing the gateway its connection.
            max_payload_size: 1024 * 1024,
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
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
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
    Ok(())
}

/// A free TCP port on 127.0.0.1 (for the demo's fallback when the default port is taken).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
