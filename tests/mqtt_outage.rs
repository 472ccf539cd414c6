//! The alert publisher against a real Mosquitto that restarts and forgets every session: alerts
//! queued before and during the outage are all acknowledged by the broker afterwards (rumqttc
//! alone drops its in-flight messages when the broker has no session for it).

mod servers;

use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_alerts_survive_a_broker_restart_that_lost_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = servers::mosquitto_with(dir.path(), false);
    let publisher = MqttAlertPublisher::connect("127.0.0.1", broker.port, "outage-test-alerts");
    let wait_acked = |target: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let p = &publisher;
        let what = what.to_string();
        async move {
            while p.acked() < target {
                assert!(Instant::now() < deadline, "{what}: {} of {target} acknowledged", p.acked());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    for i in 0..5 {
        publisher.publish_command_error(format!("before {i}").into_bytes()).await.unwrap();
    }
    wait_acked(5, "before the outage").await;
    // A burst, and the broker dies under it: some messages are in flight, unacknowledged.
    for i in 0..2000 {
        publisher.publish_command_error(format!("burst {i}").into_bytes()).await.unwrap();
    }
    broker.kill9();
    for i in 0..20 {
        publisher.publish_command_error(format!("during {i}").into_bytes()).await.unwrap();
    }
    assert_eq!(publisher.sent(), 2025);
    tokio::task::block_in_place(|| broker.start());
    wait_acked(2025, "after a restart without the session").await;
    assert_eq!(publisher.close(Duration::from_secs(5)).await, 0);
}
