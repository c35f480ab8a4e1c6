//! The `baton` binary: parses the command line, sets up logging, runs, prints errors as a chain.

use std::process::ExitCode;

use clap::Parser;

use baton::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = baton::init_logging(cli.runs_daemon(), cli.log_format) {
        eprintln!("baton: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("baton: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(baton::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            let message = baton::error_chain(&error);
            baton::report_error(&message);
            error.exit_code()
        }
    }
}
