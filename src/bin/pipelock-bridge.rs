//! pipelock-bridge: the host half of the proxy bridge, socket-activated and unprivileged; see `host::bridge`.

use pipelock_containment::config::{Config, DEFAULT_CONFIG_PATH};

fn main() {
    let result = std::fs::read_to_string(DEFAULT_CONFIG_PATH)
        .map_err(|e| format!("cannot read {DEFAULT_CONFIG_PATH}: {e}"))
        .and_then(|text| Config::parse(&text, DEFAULT_CONFIG_PATH).map_err(|e| e.to_string()))
        .and_then(|config| {
            pipelock_containment::host::bridge::serve_host(config).map_err(|e| e.to_string())
        });
    if let Err(err) = result {
        eprintln!("pipelock-bridge: {err}");
        std::process::exit(1);
    }
}
