//! `routeguard check` and `routeguard render`: the policy over manifest files.
