//! The fuzz targets' corpora (`fuzz/corpus/TARGET`) and the inputs that
//! once crashed one (`fuzz/regressions/TARGET`), replayed through the
//! same entry points on stable, so a regression shows in plain `cargo
//! test` even where libFuzzer cannot run.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

#[test]
fn every_target_replays_its_corpus_without_a_panic() {
    for (name, target) in sonde::fuzzing::TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "{name}: no seed corpus");
        let found = inputs(&fuzz_dir().join("regressions").join(name));
        for input in seeds.iter().chain(&found) {
            let data = std::fs::read(input).expect("a corpus file");
            target(&data);
        }
    }
}

#[test]
fn every_fuzz_target_is_replayed_here() {
    let mut built: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    built.sort();
    let mut replayed: Vec<String> = sonde::fuzzing::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect();
    replayed.sort();
    assert_eq!(built, replayed);
}

#[test]
fn edge_inputs_do_not_panic() {
    let edges: [&[u8]; 6] = [
        b"",
        b"\xff",
        &[0xff; 64],
        &[0; 64],
        b"\x00\xff\x00\xff",
        b"{\"type\":\"file\",\"path\":\"\",\"mode\":0,\"size\":-1}",
    ];
    for (_, target) in sonde::fuzzing::TARGETS {
        for edge in edges {
            target(edge);
        }
    }
}
