//! Command-line entry point; all wiring lives in [`tikv_health_exporter::cli`].

fn main() {
    std::process::exit(tikv_health_exporter::cli::main());
}
