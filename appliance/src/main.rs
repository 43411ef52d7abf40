//! `airlock`: the appliance binary.
fn main() {
    eprintln!("airlock: no commands yet");
    std::process::exit(2);
}
