//! The command line: one clap-derive tree; every flag has `long`, `env`, a default and a doc line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// routeguard: keeps Istio and Gateway API traffic routing safe.
#[derive(Debug, Parser)]
#[command(name = "routeguard", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: boxing the large `serve` arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifest files against the routing policy, as if they were applied (for CI).
    Check(CheckArgs),
    /// Print the mutated Deployments and the objects routeguard would generate, as YAML.
    Render(RenderArgs),
    /// Run the admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Development certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// `routeguard certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a development CA and a serving certificate (ca.crt, tls.crt, tls.key) in a folder.
    Generate(CertsGenerateArgs),
}

/// `routeguard certs generate`.
#[derive(Debug, Args)]
pub struct CertsGenerateArgs {
    /// Folder to write ca.crt, tls.crt and tls.key into (created if missing; existing files are replaced).
    #[arg(long, env = "ROUTEGUARD_CERT_DIR", default_value = "certs")]
    pub dir: PathBuf,
    /// Service name of the webhook: the certificate is for it, `<name>.<namespace>` and `<name>.<namespace>.svc`.
    #[arg(long, env = "ROUTEGUARD_SERVICE_NAME", default_value = "routeguard")]
    pub service_name: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "ROUTEGUARD_SERVICE_NAMESPACE", default_value = "routeguard")]
    pub service_namespace: String,
}

/// Under which policy, and where objects that name no namespace go.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Policy file (YAML); without one the defaults apply.
    #[arg(long, env = "ROUTEGUARD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Namespace for objects that name none. With `check --cluster`, given on the command line or
    /// in the environment, it also limits the findings to that namespace (else the whole cluster counts).
    #[arg(long, short = 'n', env = "ROUTEGUARD_NAMESPACE", default_value = "default")]
    pub namespace: String,
}

/// `routeguard render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Manifest files or folders (searched for *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `routeguard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Manifest files or folders (searched for *.yaml, *.yml, *.json); `-` reads standard input.
    /// Optional with --cluster: without any, what the cluster holds is audited.
    #[arg(required_unless_present = "cluster", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format of the findings.
    #[arg(long, short = 'o', env = "ROUTEGUARD_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Judge the files against a live cluster: its current state, read once through KUBECONFIG
    /// (or in-cluster), with the files applied on top.
    #[arg(long, env = "ROUTEGUARD_CHECK_CLUSTER", default_value_t = false)]
    pub cluster: bool,
    /// With --cluster: the kubeconfig context to read; empty: the current context.
    #[arg(long, env = "ROUTEGUARD_CONTEXT", default_value = "")]
    pub context: String,
    /// Judge the objects routeguard's generator would make (DestinationRule subsets, per-version
    /// Services); set false for a cluster that runs routeguard with `--generate=false`.
    #[arg(long, env = "ROUTEGUARD_GENERATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub generate: bool,
}

/// How `check` prints findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per finding.
    Text,
    /// A JSON array of findings.
    Json,
    /// A SARIF 2.1.0 log, for code scanning: one rule per code, each finding on its file and line.
    Sarif,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `routeguard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS admission endpoint.
    #[arg(long, env = "ROUTEGUARD_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: std::net::SocketAddr,
    /// Address of the plain-HTTP admin endpoint (/livez, /readyz, /metrics).
    #[arg(long, env = "ROUTEGUARD_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: std::net::SocketAddr,
    /// Serving certificate (PEM); without it a CA and certificate are generated into --cert-dir.
    #[arg(long, env = "ROUTEGUARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM), with --tls-cert.
    #[arg(long, env = "ROUTEGUARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) to require and verify client certificates against.
    #[arg(long, env = "ROUTEGUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Folder for generated certificates when no --tls-cert is given.
    #[arg(long, env = "ROUTEGUARD_CERT_DIR", default_value = "certs")]
    pub cert_dir: PathBuf,
    /// Service name of the webhook, for the generated certificate's SANs.
    #[arg(long, env = "ROUTEGUARD_SERVICE_NAME", default_value = "routeguard")]
    pub service_name: String,
    /// Namespace of the webhook's Service, for the generated certificate's SANs.
    #[arg(long, env = "ROUTEGUARD_SERVICE_NAMESPACE", default_value = "routeguard")]
    pub service_namespace: String,
    /// Policy file (YAML); without one the defaults apply.
    #[arg(long, env = "ROUTEGUARD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Manifest files or folders that make the snapshot (no cluster needed).
    #[arg(long, env = "ROUTEGUARD_OBJECTS", default_value = "examples/cluster")]
    pub objects: Vec<PathBuf>,
    /// Namespace for snapshot objects that name none.
    #[arg(long, env = "ROUTEGUARD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// How long to keep serving after SIGTERM before draining (lets endpoints update).
    #[arg(long, env = "ROUTEGUARD_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// After the shutdown delay, how long in-flight requests may take before connections are closed.
    #[arg(long, env = "ROUTEGUARD_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How often to look for a changed certificate or key.
    #[arg(long, env = "ROUTEGUARD_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// Log format.
    #[arg(long, env = "ROUTEGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where the snapshot comes from: `objects` (the manifest files of --objects, no cluster) or
    /// `cluster` (a live index from the API server, in-cluster or KUBECONFIG).
    #[arg(long, env = "ROUTEGUARD_SOURCE", value_enum, default_value_t = Source::Objects)]
    pub source: Source,
    /// Cluster mode: namespaces to watch, comma-separated; empty watches all.
    #[arg(long, env = "ROUTEGUARD_WATCH_NAMESPACES", value_delimiter = ',', default_value = "")]
    pub watch_namespaces: Vec<String>,
    /// Cluster mode: run the generator controller (DestinationRule subsets and per-version Services).
    #[arg(long, env = "ROUTEGUARD_GENERATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub generate: bool,
    /// Cluster mode: how often the leader reconciles every generated object (a change reconciles the Services it
    /// touches at once; this pass catches what nothing announced).
    #[arg(long, env = "ROUTEGUARD_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Cluster mode: how often the leader audits every routing object (it also does at start and after changes).
    #[arg(long, env = "ROUTEGUARD_AUDIT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub audit_interval: Duration,
    /// Cluster mode: write the audit's findings as PolicyReports (wgpolicyk8s.io/v1alpha2), one per namespace.
    #[arg(long, env = "ROUTEGUARD_POLICY_REPORTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub policy_reports: bool,
    /// Cluster mode: the Lease (in --service-namespace) whose holder runs the generator controller and the audit.
    #[arg(long, env = "ROUTEGUARD_LEADER_ELECTION_LEASE", default_value = "routeguard")]
    pub leader_election_lease: String,
    /// Cluster mode: keep a self-made CA and serving certificate in this Secret (in --service-namespace),
    /// serve from it and patch the CA bundle into the webhooks; empty: off.
    #[arg(long, env = "ROUTEGUARD_TLS_SECRET", default_value = "")]
    pub tls_secret: String,
    /// With --tls-secret: the MutatingWebhookConfiguration whose webhooks get the CA bundle.
    #[arg(long, env = "ROUTEGUARD_MUTATING_WEBHOOK", default_value = "routeguard")]
    pub mutating_webhook: String,
    /// With --tls-secret: the ValidatingWebhookConfiguration whose webhooks get the CA bundle.
    #[arg(long, env = "ROUTEGUARD_VALIDATING_WEBHOOK", default_value = "routeguard")]
    pub validating_webhook: String,
}

/// Where `serve` gets its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Manifest files (--objects): no cluster needed.
    Objects,
    /// A live index kept current from the API server.
    Cluster,
}

/// Parses a duration as `humantime` reads it (`500ms`, `5s`, `2m`, `1h 30m`),
/// or a bare number of seconds (`10`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_long_env_and_help() {
        let cmd = Cli::command();
        let nested = cmd.get_subcommands().flat_map(|c| c.get_subcommands());
        for sub in cmd.get_subcommands().chain(nested) {
            for arg in sub.get_arguments() {
                if arg.is_positional() || arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(arg.get_long().is_some(), "{} --{:?} has no long", sub.get_name(), arg.get_id());
                assert!(arg.get_env().is_some(), "{} {:?} has no env", sub.get_name(), arg.get_id());
                assert!(arg.get_help().is_some(), "{} {:?} has no doc line", sub.get_name(), arg.get_id());
            }
        }
        cmd.debug_assert();
    }

    #[test]
    fn parses_cluster_mode_flags() {
        let cli = Cli::try_parse_from(["routeguard", "serve"]).expect("defaults");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.source, Source::Objects);
        assert!(args.generate);
        assert_eq!(args.watch_namespaces, vec![String::new()]);
        assert_eq!(args.leader_election_lease, "routeguard");
        assert_eq!(args.tls_secret, "");
        assert_eq!(args.audit_interval, Duration::from_secs(300));
        assert_eq!(args.resync_interval, Duration::from_secs(300));
        assert!(args.policy_reports);
        let cli = Cli::try_parse_from([
            "routeguard",
            "serve",
            "--source=cluster",
            "--watch-namespaces=shop,web",
            "--generate=false",
            "--tls-secret=routeguard-tls",
            "--audit-interval=90s",
            "--resync-interval=1h",
            "--policy-reports=false",
        ])
        .expect("cluster");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.source, Source::Cluster);
        assert_eq!(args.watch_namespaces, vec!["shop".to_string(), "web".to_string()]);
        assert!(!args.generate);
        assert_eq!(args.tls_secret, "routeguard-tls");
        assert_eq!(args.audit_interval, Duration::from_secs(90));
        assert_eq!(args.resync_interval, Duration::from_secs(3600));
        assert!(!args.policy_reports);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("").is_err());
    }
}
