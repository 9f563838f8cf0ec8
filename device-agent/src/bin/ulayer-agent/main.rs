//! `ulayer-agent`: the on-device μLayer agent (CLI and JSON-lines protocol server).
fn main() {
    println!("ulayer-agent {}", env!("CARGO_PKG_VERSION"));
}
