//! libFuzzer harness of the `pxe` target (tests/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfpga_fuzz_targets::run("pxe", data));
