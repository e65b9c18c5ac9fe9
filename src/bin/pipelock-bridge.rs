//! pipelock-bridge: the host half of the proxy bridge, socket-activated and unprivileged; see `host::bridge`.

use camino::Utf8Path;
use pipelock_containment::config::DEFAULT_CONFIG_PATH;
use pipelock_containment::host;

fn main() {
    let result = host::fs::read_config(Utf8Path::new(DEFAULT_CONFIG_PATH))
        .and_then(|config| host::bridge::serve_host(config).map_err(Into::into));
    if let Err(err) = result {
        eprintln!("pipelock-bridge: {err:#}");
        std::process::exit(1);
    }
}
