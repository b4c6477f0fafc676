//! Manifest files: reading objects, with their file and line, from YAML and JSON.

pub mod yaml;
