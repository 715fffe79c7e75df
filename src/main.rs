//! The `storekeeper` command line. Only this file decides exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;
mod verbs;

use storekeeper::config::{Settings, SourceSettings};

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// Print what would change, with a diff of the values of each upgrade (secrets redacted).
    /// Exit 0: no changes; 2: changes pending; 1: error.
    Plan {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run one reconcile cycle and print a summary. Exit 1 when any store failed.
    Apply {
        #[command(flatten)]
        common: Common,
        /// Also read every store's release state to heal drift (otherwise only changed or
        /// not-Ready stores are looked at, and an unchanged store costs no helm process).
        #[arg(long)]
        resync: bool,
    },
    /// Run the daemon: reconcile on every interval until SIGTERM/SIGINT (a second signal aborts).
    Run {
        #[command(flatten)]
        common: Common,
        /// HTTP listen address (overrides http.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Approve the deletion of stores whose file is gone and whose deletion a guard holds back
    /// (too many at once, a possible rename) or a grace period delays. The daemon then deletes
    /// them. An approval lapses when the store's file comes back. Exit 1 when any store cannot
    /// be approved.
    ApproveDeletion {
        #[command(flatten)]
        common: Common,
        /// Stores to approve.
        #[arg(value_name = "STORE")]
        names: Vec<String>,
        /// Approve every deletion held back by the circuit breaker or the rename guard.
        #[arg(long)]
        all_blocked: bool,
        /// Who approves (default: the kubeconfig user, else $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Print what a store would get, with no cluster: its values (secrets redacted) and the
    /// manifests `helm template` renders from them. Exit 0: rendered; 1: error.
    Render {
        /// The store's name (or the path of its file, e.g. stores.d/chai-corner.toml).
        store: String,
        #[command(flatten)]
        common: Common,
    },
    /// Back a store up now: a Job from its backup CronJob, waited for (at most
    /// backup.final_timeout). Exit 0: a snapshot was saved; 1: it failed.
    Backup {
        /// The store's name.
        store: String,
        #[command(flatten)]
        common: Common,
    },
    /// List a store's snapshots (also of a deleted store, to restore it): with restic where it
    /// is installed (the repository and the backup Secret's credentials go to restic only,
    /// never printed), else through a short Job in the cluster.
    Backups {
        /// The store's name.
        store: String,
        #[command(flatten)]
        common: Common,
        /// List through a Job in the cluster even when restic is installed here.
        #[arg(long)]
        in_cluster: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show every store's status: from a running daemon's /stores, or with --from-cluster from
    /// the namespace annotations.
    Status {
        #[command(flatten)]
        common: Common,
        /// The daemon's address (default: http.listen from the config).
        #[arg(long)]
        url: Option<String>,
        /// Read the namespace annotations instead of asking the daemon.
        #[arg(long)]
        from_cluster: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Refresh every 2 s until interrupted.
        #[arg(short, long)]
        watch: bool,
    },
    /// Suspend a store for an emergency: the daemon leaves it alone (no install, upgrade or
    /// delete) until `resume`, whatever its file says (an annotation on its namespace).
    Suspend {
        #[command(flatten)]
        common: Common,
        #[arg(value_name = "STORE")]
        name: String,
        /// Who suspends (default: the kubeconfig user, else $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Lift `suspend`. A `suspend = true` in the store file still keeps it suspended.
    Resume {
        #[command(flatten)]
        common: Common,
        #[arg(value_name = "STORE")]
        name: String,
    },
    /// Ask the running daemon to fetch, plan and run now (the named stores, or all, lose their
    /// backoff), wait until that is done, and print the outcome. Exit 1: a store failed.
    Reconcile {
        #[command(flatten)]
        common: Common,
        #[arg(value_name = "STORE")]
        names: Vec<String>,
        /// The daemon's address (default: http.listen from the config).
        #[arg(long)]
        url: Option<String>,
        /// How long to wait, e.g. "10m".
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Print a store's recent operations from the running daemon.
    Logs {
        #[command(flatten)]
        common: Common,
        #[arg(value_name = "STORE")]
        name: String,
        /// The daemon's address (default: http.listen from the config).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Flags that override the config file.
#[derive(clap::Args, Clone)]
struct Common {
    /// Directory of store files (overrides source.directory).
    #[arg(long)]
    stores: Option<PathBuf>,
    /// kubeconfig file (overrides cluster.kubeconfig).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kube context (overrides cluster.context).
    #[arg(long)]
    context: Option<String>,
    /// helm binary (overrides helm.binary).
    #[arg(long)]
    helm: Option<PathBuf>,
    /// Charts directory (overrides helm.charts_dir).
    #[arg(long)]
    charts: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Common {
    fn apply(&self, s: &mut Settings) {
        if let Some(d) = &self.stores {
            s.source = SourceSettings::Directory { path: d.clone() };
        }
        if let Some(k) = &self.kubeconfig {
            s.cluster.kubeconfig = Some(k.clone());
        }
        if let Some(c) = &self.context {
            s.cluster.context = Some(c.clone());
        }
        if let Some(h) = &self.helm {
            s.helm.binary = h.clone();
        }
        if let Some(c) = &self.charts {
            s.helm.charts_dir = c.clone();
        }
    }
}

fn init_logs(format: LogFormat) {
    // kube's HTTP layer logs every failed request at ERROR before returning the error, which
    // storekeeper then reports with its context (e.g. the unreachable API server, the kubeconfig
    // and the next step): by default only the latter is shown.
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOREKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off"));
    // Colours only on a terminal: journald and log shippers want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    // Before any thread exists (see storekeeper::alloc).
    storekeeper::alloc::configure();
    // libgit2 has no network timeouts by default: a Git server that accepts the connection and
    // then goes silent would hang a fetch forever.
    // SAFETY: these set libgit2 globals; they run first in main, before any thread exists.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
        let _ = git2::opts::set_server_timeout_in_milliseconds(60_000);
    }
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
    let loaded = match &cli.config {
        Some(path) => Settings::load(path),
        None => Ok(Settings::default()),
    };
    if let Command::Validate { paths, output } = &cli.command {
        return validate(loaded, paths.clone(), *output);
    }
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            for d in &e.diagnostics {
                eprintln!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The flags every cluster-facing command shares, and the run listen address.
fn common_of(command: &Command) -> Option<(&Common, Option<std::net::SocketAddr>)> {
    match command {
        Command::Plan { common, .. }
        | Command::Apply { common, .. }
        | Command::Status { common, .. }
        | Command::ApproveDeletion { common, .. }
        | Command::Suspend { common, .. }
        | Command::Resume { common, .. }
        | Command::Reconcile { common, .. }
        | Command::Logs { common, .. }
        | Command::Backup { common, .. }
        | Command::Backups { common, .. }
        | Command::Render { common, .. } => Some((common, None)),
        Command::Run { common, listen } => Some((common, *listen)),
        Command::Validate { .. } => None,
    }
}

/// The config file plus the flag overrides: what the daemon re-reads on SIGHUP, too.
fn effective(
    path: Option<&std::path::Path>,
    common: &Common,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Settings> {
    let mut s = match path {
        Some(p) => Settings::load(p).map_err(|e| {
            let msgs: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", msgs.join("\n"))
        })?,
        None => Settings::default(),
    };
    common.apply(&mut s);
    if let Some(l) = listen {
        s.http.listen = l;
    }
    Ok(s)
}

async fn dispatch(cli: Cli, mut settings: Settings) -> anyhow::Result<ExitCode> {
    let Some((common, listen)) = common_of(&cli.command) else {
        return Ok(ExitCode::SUCCESS);
    };
    common.apply(&mut settings);
    if let Some(l) = listen {
        settings.http.listen = l;
    }
    init_logs(common.log_format);
    match cli.command {
        Command::Plan { output, .. } => cmd::plan(settings, output == Output::Json).await,
        Command::Apply { resync, .. } => cmd::apply(settings, resync).await,
        Command::Run { ref common, listen } => {
            // SIGHUP re-reads the same file with the same flag overrides.
            let (path, common) = (cli.config.clone(), common.clone());
            let load = move || effective(path.as_deref(), &common, listen);
            cmd::run(settings, Box::new(load)).await
        }
        Command::Status {
            url,
            from_cluster,
            output,
            watch,
            ..
        } => cmd::status(settings, url, from_cluster, output == Output::Json, watch).await,
        Command::Suspend { name, by, .. } => verbs::suspend(settings, &name, by).await,
        Command::Resume { name, .. } => verbs::resume(settings, &name).await,
        Command::Reconcile {
            names, url, timeout, ..
        } => {
            let timeout = storekeeper::config::parse_duration(&timeout).map_err(anyhow::Error::msg)?;
            verbs::reconcile(settings, &names, url, timeout).await
        }
        Command::Logs { name, url, .. } => verbs::logs(&settings, &name, url),
        Command::ApproveDeletion {
            names,
            all_blocked,
            by,
            ..
        } => cmd::approve_deletion(settings, &names, all_blocked, by).await,
        Command::Render { store, .. } => cmd::render(settings, &store).await,
        Command::Backup { store, .. } => cmd::backup(settings, &store).await,
        Command::Backups {
            store,
            in_cluster,
            output,
            ..
        } => cmd::backups(settings, &store, in_cluster, output == Output::Json).await,
        Command::Validate { .. } => Ok(ExitCode::SUCCESS),
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
    let mut report = storekeeper::validate::validate(&paths, &settings.spec_defaults());
    report.warnings = settings.warnings.clone();
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
