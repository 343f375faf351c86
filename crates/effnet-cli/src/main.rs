//! `effnet`: EfficientNet training and inference from one TOML file.

mod info;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "effnet",
    version,
    about = "EfficientNet (B0–B8, L2, Lite0–4, any φ) on burn",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print width, depth, resolution, dropout, parameters and MACs of the variants.
    Info {
        /// One variant (b0…b8, l2, lite0…lite4); all when omitted.
        #[arg(long)]
        variant: Option<String>,
        /// A config file whose [model] to describe instead of a released variant.
        #[arg(long, conflicts_with = "variant")]
        config: Option<PathBuf>,
        /// Emit a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config and print the resolved model (sizes and stage table).
    Check {
        file: PathBuf,
        /// Emit the resolved config and architecture as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { variant, config, json } => info::run_info(variant.as_deref(), config.as_deref(), json),
        Command::Config { command: ConfigCommand::Check { file, json } } => info::run_config_check(&file, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
