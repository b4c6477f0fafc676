//! The `routeguard` binary: parses the command line and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use routeguard::check;
use routeguard::cli::{CertsCommand, Cli, Command, OutputFormat};

mod allocator;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Check(args) => {
            let input = &args.input;
            let result = if args.cluster {
                // `--namespace` limits the findings only when the user gave it:
                // by default `check --cluster` judges the whole cluster.
                let given = matches.subcommand_matches("check").and_then(|m| m.value_source("namespace"));
                let scope = matches!(given, Some(ValueSource::CommandLine | ValueSource::EnvVariable));
                check::cluster::run(&check::cluster::ClusterCheck {
                    policy: input.policy.as_deref(),
                    paths: &args.paths,
                    namespace: &input.namespace,
                    scope: scope.then_some(input.namespace.as_str()),
                    context: &args.context,
                    generate: args.generate,
                })
                .map_err(|e| e.to_string())
            } else {
                check::run_with(input.policy.as_deref(), &args.paths, &input.namespace, args.generate)
                    .map_err(|e| e.to_string())
            };
            match result {
                Ok(report) => {
                    let text = match args.output {
                        OutputFormat::Text => report.to_text(),
                        OutputFormat::Json => report.to_json() + "\n",
                        OutputFormat::Sarif => report.to_sarif() + "\n",
                    };
                    print_out(&text);
                    if report.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS }
                }
                Err(e) => usage_error(&e),
            }
        }
        Command::Render(args) => match check::run(args.input.policy.as_deref(), &args.paths, &args.input.namespace) {
            Ok(report) => {
                print_out(&report.to_yaml());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        },
        Command::Serve(args) => match routeguard::serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("routeguard: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Certs(CertsCommand::Generate(args)) => {
            match routeguard::server::certs::generate_into(&args.dir, &args.service_name, &args.service_namespace) {
                Ok(files) => {
                    let names = routeguard::server::certs::serving_names(&args.service_name, &args.service_namespace);
                    print_out(&format!(
                        "CA {}\ncertificate {} for {}\nkey {}\n",
                        files.ca.display(),
                        files.cert.display(),
                        names.join(", "),
                        files.key.display()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("routeguard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_out(text: &str) {
    // A closed pipe (`routeguard check ... | head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("routeguard: {e}");
    ExitCode::from(2)
}
