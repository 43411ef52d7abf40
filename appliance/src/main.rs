//! `airlock`: the Airlock appliance binary. See the `appliance` library for the design.
fn main() -> std::process::ExitCode {
    appliance::cli::main()
}
