//! cc-launch: the launcher operators type (cc-launch TOOL [ARGS...]); see `host::session`.

fn main() {
    std::process::exit(pipelock_containment::host::session::cc_launch_main());
}
