//! The fuzzers' corpora (`fuzz/corpus/<target>/`), replayed on stable in the test suite:
//! every input that once reached new code, or once crashed, runs again on every change.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn every_corpus_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    for target in vfpga_fuzz_targets::TARGETS {
        let dir = root.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            vfpga_fuzz_targets::run(target, &data);
            n += 1;
        }
        assert!(n > 0, "{}: an empty corpus", dir.display());
        total += n;
    }
    println!("replayed {total} inputs");
}
