//! Prometheus metrics of the server, kept and encoded by `prometheus-client`:
//! the Prometheus project's own Rust client (the one linkerd2's policy
//! controller uses), so the exposition follows OpenMetrics 1.0 exactly
//! (escaping, `# TYPE` and `# HELP`, `_total` suffixes, the closing `# EOF`)
//! without code of ours to keep right.
//!
//! One [`Registry`] per [`Metrics`] holds every server family. Live mode keeps
//! its own registry in [`ClusterStatus`](crate::cluster::metrics::ClusterStatus);
//! `/metrics` encodes both into one response ([`Metrics::encode`] and then the
//! cluster's, without `# EOF`) and closes it with one [`encode_eof`]. Values read
//! at scrape time (objects in the snapshot, readiness) are gauges set just
//! before encoding.
//!
//! The hot path stays a few atomic operations: the latency histograms and the
//! scalar counters are handles created once; the admission and rejection
//! counters are [`Family`] entries looked up under a read lock, allocated only
//! the first time a label set is seen (their labels are `&'static str`, and
//! `kind` is folded to the known kinds or `other`, so the sets stay bounded).

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::{Endpoint, Summary};
use crate::model::Kind;

/// Upper bounds of the latency buckets, in seconds (from 50 us).
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The content type of [`Metrics::render`]: the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `routeguard_admission_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    kind: &'static str,
    operation: &'static str,
    decision: &'static str,
}

/// Labels of `routeguard_http_rejected_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectedLabels {
    status: u16,
    reason: &'static str,
}

/// Labels of `routeguard_admission_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

/// Labels of `routeguard_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the server exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    validate_latency: Histogram,
    mutate_latency: Histogram,
    snapshot_objects: Gauge,
    ready: Gauge,
    cert_not_after: Gauge,
    cert_reloads: Counter,
    cert_reload_errors: Counter,
    panics: Counter,
    plain_http: Counter,
}

/// Values read at scrape time rather than stored.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Objects in the current snapshot.
    pub snapshot_objects: usize,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder appends it to
        // the sample (`# TYPE routeguard_admission_requests counter`,
        // `routeguard_admission_requests_total{...} 2`), as OpenMetrics names them.
        // The registry ends each help text with a period of its own.
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "routeguard_admission_requests",
            "Admission requests by endpoint, kind, operation and decision",
            requests.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "routeguard_admission_duration_seconds",
            "Time from request received to response ready",
            latency.clone(),
        );
        let rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "routeguard_http_rejected",
            "Requests answered with an error status, by status and reason",
            rejected.clone(),
        );
        let snapshot_objects = Gauge::default();
        registry.register(
            "routeguard_snapshot_objects",
            "Objects in the snapshot requests are judged against",
            snapshot_objects.clone(),
        );
        let ready = Gauge::default();
        registry.register("routeguard_ready", "1 while /readyz answers 200", ready.clone());
        let cert_not_after = Gauge::default();
        registry.register(
            "routeguard_tls_cert_not_after_seconds",
            "Expiry of the serving certificate, seconds since the Unix epoch",
            cert_not_after.clone(),
        );
        let cert_reloads = Counter::default();
        registry.register("routeguard_tls_cert_reloads", "Serving certificate reloads", cert_reloads.clone());
        let cert_reload_errors = Counter::default();
        registry.register(
            "routeguard_tls_cert_reload_errors",
            "Reloads that failed; the previous certificate stayed",
            cert_reload_errors.clone(),
        );
        let panics = Counter::default();
        registry.register("routeguard_handler_panics", "Handler panics answered with a 500", panics.clone());
        let plain_http = Counter::default();
        registry.register(
            "routeguard_plain_http_rejected",
            "Plain-HTTP requests refused on the TLS port",
            plain_http.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("routeguard_build_info", "Always 1; the version is a label", build);
        Metrics {
            registry,
            requests,
            rejected,
            validate_latency: latency.get_or_create_owned(&EndpointLabels { endpoint: Endpoint::Validate.as_str() }),
            mutate_latency: latency.get_or_create_owned(&EndpointLabels { endpoint: Endpoint::Mutate.as_str() }),
            snapshot_objects,
            ready,
            cert_not_after,
            cert_reloads,
            cert_reload_errors,
            panics,
            plain_http,
        }
    }
}

impl Metrics {
    /// Counts one reviewed admission request and its latency.
    pub fn admission(&self, endpoint: Endpoint, summary: &Summary, latency: Duration) {
        let labels = RequestLabels {
            endpoint: endpoint.as_str(),
            kind: kind_label(&summary.kind),
            operation: summary.operation,
            decision: summary.decision.as_str(),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency(endpoint).observe(latency.as_secs_f64());
    }

    /// Counts a request answered with an error status (400, 404, 413, 415, 500) and why.
    pub fn rejected(&self, status: u16, reason: &'static str) {
        self.rejected.get_or_create(&RejectedLabels { status, reason }).inc();
    }

    /// Records the latency of a request that ended in an error.
    pub fn error_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.latency(endpoint).observe(latency.as_secs_f64());
    }

    fn latency(&self, endpoint: Endpoint) -> &Histogram {
        match endpoint {
            Endpoint::Validate => &self.validate_latency,
            Endpoint::Mutate => &self.mutate_latency,
        }
    }

    /// Sets the serving certificate's expiry (seconds since the Unix epoch).
    pub fn set_cert_not_after(&self, unix_seconds: i64) {
        self.cert_not_after.set(unix_seconds);
    }

    /// Counts a successful certificate reload.
    pub fn cert_reloaded(&self) {
        self.cert_reloads.inc();
    }

    /// Counts a reload that failed (the previous certificate stays).
    pub fn cert_reload_failed(&self) {
        self.cert_reload_errors.inc();
    }

    /// Counts a handler panic turned into a 500.
    pub fn panicked(&self) {
        self.panics.inc();
    }

    /// Counts a plain-HTTP request on the TLS port.
    pub fn plain_http(&self) {
        self.plain_http.inc();
    }

    /// Successful certificate reloads so far.
    pub fn cert_reloads(&self) -> u64 {
        self.cert_reloads.get()
    }

    /// Appends the server's families to `out`, without the closing `# EOF`
    /// (so another registry's families can follow in the same response).
    pub fn encode(&self, out: &mut String, live: Live) -> fmt::Result {
        self.snapshot_objects.set(i64::try_from(live.snapshot_objects).unwrap_or(i64::MAX));
        self.ready.set(i64::from(live.ready));
        encode_registry(out, &self.registry)
    }

    /// The complete OpenMetrics exposition of the server alone, `# EOF` included.
    pub fn render(&self, live: Live) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.encode(&mut out, live).and_then(|()| encode_eof(&mut out));
        out
    }
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
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("# TYPE routeguard_admission_requests counter"), "{text}");
        assert!(has("# HELP routeguard_ready 1 while /readyz answers 200."));
        assert!(
            has(
                "routeguard_admission_requests_total{endpoint=\"validate\",kind=\"VirtualService\",operation=\"CREATE\",decision=\"denied\"} 2"
            ),
            "{text}"
        );
        assert!(has(
            "routeguard_admission_requests_total{endpoint=\"validate\",kind=\"other\",operation=\"CREATE\",decision=\"unhandled\"} 1"
        ));
        assert!(has("# TYPE routeguard_admission_duration_seconds histogram"));
        assert!(has("routeguard_admission_duration_seconds_bucket{le=\"0.00005\",endpoint=\"validate\"} 1"), "{text}");
        assert!(has("routeguard_admission_duration_seconds_bucket{le=\"0.0005\",endpoint=\"validate\"} 2"));
        assert!(has("routeguard_admission_duration_seconds_bucket{le=\"1.0\",endpoint=\"validate\"} 2"));
        assert!(has("routeguard_admission_duration_seconds_bucket{le=\"+Inf\",endpoint=\"validate\"} 3"));
        assert!(has("routeguard_admission_duration_seconds_count{endpoint=\"validate\"} 3"));
        assert!(has("routeguard_admission_duration_seconds_count{endpoint=\"mutate\"} 0"));
        assert!(has("routeguard_snapshot_objects 7"));
        assert!(has("routeguard_ready 1"));
        assert!(has("routeguard_tls_cert_not_after_seconds 1900000000"));
        assert!(has("routeguard_tls_cert_reloads_total 1"));
        assert!(has("routeguard_tls_cert_reload_errors_total 0"));
        assert!(has(&format!("routeguard_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        assert!(text.ends_with("# EOF\n"));
    }
}
