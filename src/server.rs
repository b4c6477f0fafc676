//! The HTTPS admission server (`routeguard serve`).

use crate::cli::ServeArgs;

/// Runs the webhook until SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("serve is not built yet")
}
