//! The `s3tap` proxy binary; everything lives in [`s3tap::proxy`].

fn main() -> std::process::ExitCode {
    s3tap::proxy::main()
}
