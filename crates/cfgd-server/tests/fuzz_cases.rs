//! Every fuzz seed and every input a fuzzer found a crash with
//! (`fuzz/seeds/`, `fuzz/regressions/`), run through its target's checks.

use std::path::Path;

#[test]
fn every_seed_and_found_crash_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let targets = || {
        cfgd::fuzzing::TARGETS
            .iter()
            .chain(cfgd_server::fuzzing::TARGETS)
    };
    for (target, check) in targets() {
        let seeds = fuzz.join("seeds").join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&seeds)
            .unwrap_or_else(|e| panic!("{}: {e}", seeds.display()))
            .collect();
        assert!(!inputs.is_empty(), "{} has no seed", seeds.display());
        if let Ok(found) = std::fs::read_dir(fuzz.join("regressions").join(target)) {
            inputs.extend(found);
        }
        for input in inputs {
            let path = input.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: {} fails", path.display());
            }
        }
    }
    // Each target of fuzz/ is checked here, none forgotten.
    assert_eq!(
        std::fs::read_dir(fuzz.join("fuzz_targets"))
            .unwrap()
            .count(),
        targets().count()
    );
}
