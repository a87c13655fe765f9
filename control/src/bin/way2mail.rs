//! `way2mail`: the operator CLI for `way2mail-control` (see `way2mail --help` and
//! docs/control-protocol.md).

fn main() -> std::process::ExitCode {
    way2mail_control::cli::main()
}
