//! libFuzzer harness of the `vhost_user` target (tests/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfpga_fuzz_targets::run("vhost_user", data));
