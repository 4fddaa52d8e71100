fn main() -> std::process::ExitCode {
    netpol_conformance::cli::main()
}
