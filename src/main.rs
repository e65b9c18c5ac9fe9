//! Entry point: parse the command line, run the command, print the error chain once, exit with its code.

use clap::Parser;

use pipelock_containment::{cli::Cli, commands, exit, output};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => std::process::exit(output::error(&err)),
    }
}
