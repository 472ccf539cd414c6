//! riskwatch's own series on top of the shared registry (`riskwatch_service::metrics`): the
//! rules stage's, the MQTT source's, the sinks' flushes and Kafka consumer lag
//! (docs/operations.md, "Metrics").

pub use riskwatch_service::metrics::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Buckets (seconds) of the rule-evaluation histogram: per batch of readings.
pub const EVAL_BUCKETS: &[f64] = &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5];
/// Buckets (seconds) of sink flush latency.
pub const FLUSH_BUCKETS: &[f64] = &[0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Kafka consumer lag per partition, from librdkafka's statistics (emitted every
/// `statistics.interval.ms`, which riskwatch's consumers set to 5 s).
pub fn consumer_lag(m: &Metrics, group: &str, stats: &rdkafka::Statistics) {
    for (topic, t) in &stats.topics {
        for (partition, p) in &t.partitions {
            if *partition < 0 || p.consumer_lag < 0 {
                continue; // librdkafka's internal partition, or not consumed by this member
            }
            let part = partition.to_string();
            m.gauge(
                "riskwatch_kafka_consumer_lag",
                "Records between a consumer group's position and the partition's end.",
                &[("group", group), ("topic", topic), ("partition", &part)],
            )
            .set(p.consumer_lag);
        }
    }
}

/// A consumer context that reports consumer lag (the sink's consumer).
pub struct LagContext {
    /// Where to report.
    pub metrics: Metrics,
    /// The consumer group, for the label.
    pub group: String,
}

impl rdkafka::ClientContext for LagContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        consumer_lag(&self.metrics, &self.group, &statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

/// What the rule stage reports: the embedded rules stage and every Kafka rules worker.
#[derive(Clone)]
pub struct RuleMetrics {
    m: Metrics,
    eval: Arc<Histogram>,
    evaluated: Counter,
    active: [Gauge; 4],
    state_copy: Arc<Histogram>,
}

impl RuleMetrics {
    /// Registers the rule-stage series in `m`.
    pub fn new(m: &Metrics) -> Self {
        let active = riskwatch_core::Level::ALL
            .map(|l| m.gauge("riskwatch_alerts_active", "Alerts active now, by level.", &[("level", l.as_str())]));
        // Every level/change series exists from the start, so rates are defined at once.
        for l in riskwatch_core::Level::ALL {
            for c in ["raised", "escalated", "cleared"] {
                m.counter(EVENTS, EVENTS_HELP, &[("level", l.as_str()), ("change", c)]);
            }
        }
        RuleMetrics {
            m: m.clone(),
            eval: m.histogram(
                "riskwatch_rule_evaluation_seconds",
                "Rule engine time per batch of readings (one MQTT message or Kafka record).",
                &[],
                EVAL_BUCKETS,
            ),
            evaluated: m.counter("riskwatch_readings_evaluated_total", "Readings through the rule engine.", &[]),
            active,
            state_copy: m.histogram(
                "riskwatch_rule_state_copy_seconds",
                "Time the rules stage spent copying the engine's state to save it (readings wait meanwhile).",
                &[],
                EVAL_BUCKETS,
            ),
        }
    }

    /// One copy of the engine's state, taken to save it.
    pub fn state_copied(&self, took: Duration) {
        self.state_copy.observe(took);
    }

    /// `n` readings evaluated in `took`.
    pub fn evaluated(&self, n: usize, took: Duration) {
        self.evaluated.add(n as u64);
        self.eval.observe(took);
    }

    /// One alert event.
    pub fn event(&self, e: &riskwatch_core::AlertEvent) {
        self.m.counter(EVENTS, EVENTS_HELP, &[("level", e.level.as_str()), ("change", e.change.as_str())]).inc();
    }

    /// One rejected message or batch item.
    pub fn rejection(&self, reason: &str) {
        rejection(&self.m, reason);
    }

    /// The engine's active alerts now.
    pub fn active(&self, levels: impl IntoIterator<Item = riskwatch_core::Level>) {
        let mut n = [0i64; 4];
        for l in levels {
            n[l.index()] += 1;
        }
        for (g, v) in self.active.iter().zip(n) {
            g.set(v);
        }
    }
}

const EVENTS: &str = "riskwatch_alert_events_total";
const EVENTS_HELP: &str =
    "Alert events, by level and change (raised, escalated, de-escalated, cleared, acknowledged…).";

/// One rejected message or batch item, by reason code (wire-format.md §7).
pub fn rejection(m: &Metrics, reason: &str) {
    m.counter("riskwatch_rejections_total", "Rejected input (dead-lettered), by reason.", &[("reason", reason)]).inc();
}

/// The MQTT source's counters (ingest and the embedded wiring).
pub fn mqtt_source(m: &Metrics, stats: &Arc<riskwatch_ingest::SourceStats>) {
    let read = |name: &'static str,
                help: &'static str,
                labels: &[(&str, &str)],
                f: fn(&riskwatch_ingest::SourceStats) -> u64| {
        let s = Arc::clone(stats);
        m.read(name, help, "counter", labels, move || f(&s) as f64);
    };
    read("riskwatch_mqtt_messages_total", "MQTT messages received by the ingest.", &[], |s| {
        s.messages.load(Ordering::Relaxed)
    });
    read("riskwatch_readings_in_total", "Valid readings received, by source.", &[("source", "mqtt")], |s| {
        s.readings.load(Ordering::Relaxed)
    });
    for (limit, f) in [
        (
            "gateway_inflight",
            (|s| s.held_by_gateway_limit.load(Ordering::Relaxed)) as fn(&riskwatch_ingest::SourceStats) -> u64,
        ),
        ("unacked_limit", |s| s.held_by_total_limit.load(Ordering::Relaxed)),
        ("pipeline", |s| s.held_by_pipeline.load(Ordering::Relaxed)),
    ] {
        read(
            "riskwatch_gateway_backpressure_total",
            "Times the embedded broker's gateway front stopped reading a gateway's messages, by the limit reached.",
            &[("limit", limit)],
            f,
        );
    }
    let s = Arc::clone(stats);
    m.read(
        "riskwatch_gateway_connections",
        "Gateway connections open on the embedded broker's gateway front.",
        "gauge",
        &[],
        move || s.gateways.load(Ordering::Relaxed) as f64,
    );
    read(
        "riskwatch_mqtt_reconnects_total",
        "MQTT connection losses (each followed by a reconnect).",
        &[("client", "ingest")],
        |s| s.reconnects.load(Ordering::Relaxed),
    );
    read(
        "riskwatch_mqtt_coalesced_reads_total",
        "Reads of the broker's socket made on the receive-coalescing timer ([mqtt] read_coalesce) that brought messages.",
        &[],
        |s| s.coalesced_reads.load(Ordering::Relaxed),
    );
}

/// The SL 651 source's counters (the embedded wiring and ingest, with `[sl651] listen`).
pub fn sl651_source(m: &Metrics, stats: &Arc<riskwatch_ingest::Sl651Stats>) {
    let read = |name: &'static str,
                help: &'static str,
                kind: &'static str,
                labels: &[(&str, &str)],
                f: fn(&riskwatch_ingest::Sl651Stats) -> u64| {
        let s = Arc::clone(stats);
        m.read(name, help, kind, labels, move || f(&s) as f64);
    };
    read(
        "riskwatch_readings_in_total",
        "Valid readings received, by source.",
        "counter",
        &[("source", "sl651")],
        |s| s.readings.load(Ordering::Relaxed),
    );
    read(
        "riskwatch_sl651_frames_total",
        "SL 651 frames received that passed the framing and CRC checks.",
        "counter",
        &[],
        |s| s.frames.load(Ordering::Relaxed),
    );
    read(
        "riskwatch_sl651_acks_total",
        "SL 651 reports acknowledged to their stations (after the pipeline confirmed them).",
        "counter",
        &[],
        |s| s.acks.load(Ordering::Relaxed),
    );
    read("riskwatch_sl651_connections", "SL 651 stations connected now.", "gauge", &[], |s| {
        s.connections.load(Ordering::Relaxed)
    });
    read(
        "riskwatch_sl651_refused_total",
        "SL 651 connections closed at once because sl651.max_connections were connected.",
        "counter",
        &[],
        |s| s.refused.load(Ordering::Relaxed),
    );
    read(
        "riskwatch_sl651_idle_closed_total",
        "SL 651 connections closed for sending no checked frame (or reading no acknowledgement) within sl651.idle_timeout.",
        "counter",
        &[],
        |s| s.idle_closed.load(Ordering::Relaxed),
    );
}

/// A sink's commit / flush: counts and latency.
pub fn sink_flush(m: &Metrics, sink: &'static str) -> impl Fn(usize, usize, Duration, bool) + Send + Sync + 'static {
    let readings = m.counter("riskwatch_readings_stored_total", "Readings written by a sink.", &[("sink", sink)]);
    let events = m.counter("riskwatch_alert_events_stored_total", "Alert events written by a sink.", &[("sink", sink)]);
    let errors = m.counter("riskwatch_sink_flush_errors_total", "Failed sink commits / flushes.", &[("sink", sink)]);
    let latency =
        m.histogram("riskwatch_sink_flush_seconds", "Sink commit / flush latency.", &[("sink", sink)], FLUSH_BUCKETS);
    move |r, e, took, ok| {
        latency.observe(took);
        if ok {
            readings.add(r as u64);
            events.add(e as u64);
        } else {
            errors.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.counter("riskwatch_x_total", "X.", &[("reason", "bad \"json\"")]).add(3);
        m.gauge("riskwatch_g", "G.", &[]).set(-2);
        let h = m.histogram("riskwatch_h_seconds", "H.", &[("stage", "rules")], &[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        m.read("riskwatch_r_total", "R.", "counter", &[], || 7.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE riskwatch_x_total counter\nriskwatch_x_total{reason=\"bad \\\"json\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("riskwatch_g -2\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"0.01\"} 2\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_bucket{stage=\"rules\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("riskwatch_h_seconds_count{stage=\"rules\"} 3\n"), "{text}");
        assert!(text.contains("riskwatch_r_total 7\n"), "{text}");
        // The same name and labels give the same counter.
        m.counter("riskwatch_x_total", "X.", &[("reason", "bad \"json\"")]).inc();
        assert!(m.render().contains("} 4\n"));
        // Every registry carries the process's own series (read from /proc on Linux).
        if cfg!(target_os = "linux") {
            let text = m.render();
            for family in
                ["process_cpu_seconds_total counter", "process_resident_memory_bytes gauge", "process_open_fds gauge"]
            {
                assert!(text.contains(&format!("# TYPE {family}\n")), "{family}: {text}");
            }
        }
    }
}
