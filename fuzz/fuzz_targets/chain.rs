//! libFuzzer harness of the `chain` target (tests/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfpga_fuzz_targets::run("chain", data));
