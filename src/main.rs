//! The `routeguard` binary: parses the command line and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use routeguard::check;
use routeguard::cli::{CertsCommand, Cli, Command, OutputFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            let input = &args.input;
            match check::run(input.policy.as_deref(), &input.paths, &input.namespace) {
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
        Command::Render(input) => match check::run(input.policy.as_deref(), &input.paths, &input.namespace) {
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
