//! libFuzzer harness of the `config` target (tests/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfpga_fuzz_targets::run("config", data));
