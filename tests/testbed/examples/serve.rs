//! Runs a test API server for poking at it by hand with helm or kubectl:
//! `cargo run -p testbed --example serve`, then `KUBECONFIG=<printed path> helm ...`.
//! Press Enter to stop it; the whole request log is printed to stderr on the way out.

fn main() {
    let api = testbed::TestApi::start();
    println!("url={}", api.url());
    println!("KUBECONFIG={}", api.kubeconfig().display());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    eprint!("{}", api.log_tail(usize::MAX));
}
