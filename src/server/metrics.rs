//! Prometheus metrics, hand-rolled: a few counters, gauges and one histogram
//! per endpoint, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::admission::{Endpoint, Summary};
use crate::model::Kind;

/// Upper bounds of the latency buckets, in seconds (from 50 us).
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count.load(Ordering::Relaxed));
    }
}

/// Labels of one admission counter.
type RequestLabels = (&'static str, &'static str, &'static str, &'static str);

/// Every metric the server exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestLabels, u64>>,
    rejected: Mutex<BTreeMap<(u16, &'static str), u64>>,
    validate_latency: Histogram,
    mutate_latency: Histogram,
    cert_not_after: AtomicI64,
    cert_reloads: AtomicU64,
    cert_reload_errors: AtomicU64,
    panics: AtomicU64,
    plain_http: AtomicU64,
}

/// Values read at scrape time rather than stored.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Objects in the current snapshot.
    pub snapshot_objects: usize,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
}

impl Metrics {
    /// Counts one reviewed admission request and its latency.
    pub fn admission(&self, endpoint: Endpoint, summary: &Summary, latency: Duration) {
        let labels = (endpoint.as_str(), kind_label(&summary.kind), summary.operation, summary.decision.as_str());
        if let Ok(mut map) = self.requests.lock() {
            *map.entry(labels).or_default() += 1;
        }
        self.latency(endpoint).observe(latency);
    }

    /// Counts a request answered with an error status (400, 404, 413, 415, 500) and why.
    pub fn rejected(&self, status: u16, reason: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry((status, reason)).or_default() += 1;
        }
    }

    /// Records the latency of a request that ended in an error.
    pub fn error_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.latency(endpoint).observe(latency);
    }

    fn latency(&self, endpoint: Endpoint) -> &Histogram {
        match endpoint {
            Endpoint::Validate => &self.validate_latency,
            Endpoint::Mutate => &self.mutate_latency,
        }
    }

    /// Sets the serving certificate's expiry (seconds since the Unix epoch).
    pub fn set_cert_not_after(&self, unix_seconds: i64) {
        self.cert_not_after.store(unix_seconds, Ordering::Relaxed);
    }

    /// Counts a successful certificate reload.
    pub fn cert_reloaded(&self) {
        self.cert_reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload that failed (the previous certificate stays).
    pub fn cert_reload_failed(&self) {
        self.cert_reload_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a handler panic turned into a 500.
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a plain-HTTP request on the TLS port.
    pub fn plain_http(&self) {
        self.plain_http.fetch_add(1, Ordering::Relaxed);
    }

    /// Successful certificate reloads so far.
    pub fn cert_reloads(&self) -> u64 {
        self.cert_reloads.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, live: Live) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "routeguard_admission_requests_total",
            "counter",
            "Admission requests by endpoint, kind, operation and decision.",
        );
        if let Ok(map) = self.requests.lock() {
            for ((endpoint, kind, operation, decision), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "routeguard_admission_requests_total{{endpoint=\"{endpoint}\",kind=\"{kind}\",operation=\"{operation}\",decision=\"{decision}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "routeguard_admission_duration_seconds",
            "histogram",
            "Time from request received to response ready.",
        );
        self.validate_latency.render(&mut out, "routeguard_admission_duration_seconds", "endpoint=\"validate\"");
        self.mutate_latency.render(&mut out, "routeguard_admission_duration_seconds", "endpoint=\"mutate\"");
        header(
            &mut out,
            "routeguard_http_rejected_total",
            "counter",
            "Requests answered with an error status, by status and reason.",
        );
        if let Ok(map) = self.rejected.lock() {
            for ((status, reason), n) in map.iter() {
                let _ = writeln!(out, "routeguard_http_rejected_total{{status=\"{status}\",reason=\"{reason}\"}} {n}");
            }
        }
        let gauges: [(&str, &str, &str, String); 8] = [
            (
                "routeguard_snapshot_objects",
                "gauge",
                "Objects in the snapshot requests are judged against.",
                live.snapshot_objects.to_string(),
            ),
            ("routeguard_ready", "gauge", "1 while /readyz answers 200.", u8::from(live.ready).to_string()),
            (
                "routeguard_tls_cert_not_after_seconds",
                "gauge",
                "Expiry of the serving certificate, seconds since the Unix epoch.",
                self.cert_not_after.load(Ordering::Relaxed).to_string(),
            ),
            (
                "routeguard_tls_cert_reloads_total",
                "counter",
                "Serving certificate reloads.",
                self.cert_reloads.load(Ordering::Relaxed).to_string(),
            ),
            (
                "routeguard_tls_cert_reload_errors_total",
                "counter",
                "Reloads that failed; the previous certificate stayed.",
                self.cert_reload_errors.load(Ordering::Relaxed).to_string(),
            ),
            (
                "routeguard_handler_panics_total",
                "counter",
                "Handler panics answered with a 500.",
                self.panics.load(Ordering::Relaxed).to_string(),
            ),
            (
                "routeguard_plain_http_rejected_total",
                "counter",
                "Plain-HTTP requests refused on the TLS port.",
                self.plain_http.load(Ordering::Relaxed).to_string(),
            ),
            ("routeguard_build_info", "gauge", "Always 1; the version is a label.", String::new()),
        ];
        for (name, kind, help, value) in gauges {
            header(&mut out, name, kind, help);
            if name == "routeguard_build_info" {
                let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The kind label: one of the kinds routeguard knows, else `other` (label
/// values must not grow with whatever a request names).
fn kind_label(kind: &str) -> &'static str {
    Kind::ALL.iter().map(|k| k.as_str()).find(|k| *k == kind).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Decision;
    use crate::policy::Code;

    fn summary(kind: &str, decision: Decision) -> Summary {
        Summary {
            uid: "u".into(),
            kind: kind.into(),
            namespace: "default".into(),
            name: "n".into(),
            operation: "CREATE",
            decision,
            codes: vec![Code::RG103],
            dry_run: false,
            note: None,
        }
    }

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.admission(Endpoint::Validate, &summary("VirtualService", Decision::Denied), Duration::from_micros(40));
        m.admission(Endpoint::Validate, &summary("VirtualService", Decision::Denied), Duration::from_micros(300));
        m.admission(Endpoint::Validate, &summary("Secret", Decision::Unhandled), Duration::from_secs(3));
        m.set_cert_not_after(1_900_000_000);
        m.cert_reloaded();
        let text = m.render(Live { snapshot_objects: 7, ready: true });
        assert!(text.contains("routeguard_admission_requests_total{endpoint=\"validate\",kind=\"VirtualService\",operation=\"CREATE\",decision=\"denied\"} 2"), "{text}");
        assert!(text.contains("kind=\"other\",operation=\"CREATE\",decision=\"unhandled\"} 1"));
        assert!(text.contains("routeguard_admission_duration_seconds_bucket{endpoint=\"validate\",le=\"0.00005\"} 1"));
        assert!(text.contains("routeguard_admission_duration_seconds_bucket{endpoint=\"validate\",le=\"0.0005\"} 2"));
        assert!(text.contains("routeguard_admission_duration_seconds_bucket{endpoint=\"validate\",le=\"1\"} 2"));
        assert!(text.contains("routeguard_admission_duration_seconds_bucket{endpoint=\"validate\",le=\"+Inf\"} 3"));
        assert!(text.contains("routeguard_admission_duration_seconds_count{endpoint=\"validate\"} 3"));
        assert!(text.contains("routeguard_snapshot_objects 7"));
        assert!(text.contains("routeguard_tls_cert_not_after_seconds 1900000000"));
        assert!(text.contains("routeguard_tls_cert_reloads_total 1"));
    }
}
