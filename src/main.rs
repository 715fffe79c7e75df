//! The `storekeeper` command line. Only this file decides exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use storekeeper::config::{Settings, SourceSettings};
use storekeeper::spec::SpecDefaults;

#[derive(Parser)]
#[command(
    name = "storekeeper",
    version,
    about = "Provisions isolated ecommerce stores on Kubernetes from files in Git"
)]
struct Cli {
    /// Daemon config file (storekeeper.toml); every setting has a default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check store files (and the daemon config given with --config) without touching a cluster.
    /// Exit 0: valid; 1: invalid; 2: usage error.
    Validate {
        /// Store files or directories; default: the configured store directory.
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let settings = match &cli.config {
        Some(path) => match Settings::load(path) {
            Ok(s) => Ok(s),
            Err(e) => Err(e),
        },
        None => Ok(Settings::default()),
    };
    match cli.command {
        Command::Validate { paths, output } => validate(settings, paths, output),
    }
}

fn validate(
    settings: Result<Settings, storekeeper::config::ConfigError>,
    paths: Vec<PathBuf>,
    output: Output,
) -> ExitCode {
    let (settings, config_diags) = match settings {
        Ok(s) => (s, Vec::new()),
        Err(e) => (Settings::default(), e.diagnostics),
    };
    let paths = if paths.is_empty() {
        match &settings.source {
            SourceSettings::Directory { path } => vec![path.clone()],
            SourceSettings::Git(_) => {
                eprintln!(
                    "error: the configured source is Git; pass the store files or directories to validate"
                );
                return ExitCode::from(2);
            }
        }
    } else {
        paths
    };
    let defaults = SpecDefaults {
        base_domain: settings.cluster.base_domain.clone(),
    };
    let mut report = storekeeper::validate::validate(&paths, &defaults);
    if !config_diags.is_empty() {
        report.valid = false;
        let mut all = config_diags;
        all.append(&mut report.diagnostics);
        report.diagnostics = all;
    }
    match output {
        Output::Text => {
            let text = report.human();
            if report.valid {
                print!("{text}")
            } else {
                eprint!("{text}")
            }
        }
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
