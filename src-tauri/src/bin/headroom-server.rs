//! `headroom-server`: Headroom's backend alone (the pool, the OpenAI API, the web UI), linked
//! without Tauri or WebKit. `headroom --headless` hands over to it; it takes the same flags.

use std::process::ExitCode;

use clap::Parser;

use headroom_app::cli::Cli;

fn main() -> ExitCode {
    headroom_app::init_logging();
    let cli = Cli::parse();
    headroom_app::run_with_settings(&cli, |store, dirs| {
        headroom_app::run_headless(&store, &dirs)
    })
}
