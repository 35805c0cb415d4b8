//! libFuzzer harness of the `xen_guest` target (tests/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfpga_fuzz_targets::run("xen_guest", data));
