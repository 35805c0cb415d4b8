//! `vfpga`: run accelerator kernels from a guest (the command lives in the library's
//! `cli` module, where the man page generator reads its definition too).

fn main() -> std::process::ExitCode {
    vfpga::cli::main()
}
