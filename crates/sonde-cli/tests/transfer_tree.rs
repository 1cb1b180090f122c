//! `sonde send DIR` / `sonde receive` with trees of many small files: a
//! tree byte-exact with modes and times, a cut tree resumed with only what
//! was missing, a receiver killed mid-tree leaving only verified files in
//! place, a refused file that does not stop the rest, and symlinks.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use common::{
    Finished, Listener, TempDir, proxy, proxy_with, random_bytes, run, sonde, start_sonde,
};

fn receiver(dir: &Path, args: &[&str]) -> Listener {
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut all = vec!["receive", dir, "--bind", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    start_sonde(&all, Stdio::null(), Stdio::piped())
}

fn send(paths: &[&Path], port: u16, args: &[&str]) -> Finished {
    let mut cmd = sonde();
    cmd.arg("send").args(paths).arg(format!("127.0.0.1:{port}"));
    cmd.args(args);
    run(cmd, b"")
}

fn json(finished: &Finished) -> serde_json::Value {
    serde_json::from_slice(&finished.stdout)
        .unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", finished.stdout_text()))
}

/// A tree of `count` files, 100 to a directory, sizes from 0 to about 8
/// KiB (and, with `large`, two of 3 MiB among them), modes and times of
/// their own, and an empty directory.
fn tree(root: &Path, count: usize, large: bool) -> PathBuf {
    let top = root.join("tree");
    for i in 0..count {
        let dir = top.join(format!("d{:03}", i / 100));
        fs::create_dir_all(&dir).expect("dir");
        let size = if large && i % (count / 2).max(1) == 7 {
            3 << 20
        } else {
            (i * 37) % 8200
        };
        let path = dir.join(format!("f{i:05}"));
        fs::write(&path, random_bytes(size, i as u64)).expect("file");
        let mode = [0o644, 0o600, 0o755, 0o640][i % 4];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("mode");
        let when = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000 + i as u64, 123_456_789);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("time");
    }
    fs::create_dir_all(top.join("empty/inside")).expect("empty dirs");
    for dir in walk(&top).into_iter().filter(|p| p.is_dir()) {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
        fs::File::open(&dir)
            .and_then(|f| f.set_modified(when))
            .expect("dir time");
    }
    top
}

/// Every path under `root`, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("listing") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path.clone());
            }
            all.push(path);
        }
    }
    all.sort();
    all
}

/// The files and directories under `src` are under `dst` with the same
/// bytes, mode and modification time.
fn assert_same_tree(src: &Path, dst: &Path) {
    let theirs = walk(src);
    let ours = walk(dst);
    let rel = |all: &[PathBuf], root: &Path| -> Vec<PathBuf> {
        all.iter()
            .map(|p| p.strip_prefix(root).expect("under").to_path_buf())
            .collect()
    };
    assert_eq!(rel(&theirs, src), rel(&ours, dst), "the same names");
    for path in &theirs {
        let there = dst.join(path.strip_prefix(src).expect("under"));
        let (a, b) = (
            fs::metadata(path).expect("src"),
            fs::metadata(&there).expect("dst"),
        );
        let shown = there.display();
        assert_eq!(a.mode() & 0o777, b.mode() & 0o777, "mode of {shown}");
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "time of {shown}"
        );
        if a.is_file() {
            assert!(
                fs::read(path).ok() == fs::read(&there).ok(),
                "bytes of {shown}"
            );
        }
    }
}

#[test]
fn a_tree_of_ten_thousand_files_arrives_with_modes_and_times() {
    let src = TempDir::new("tree-big");
    let dst = TempDir::new("tree-big-dst");
    let top = tree(&src.0, 10_000, false);
    let recv = receiver(&dst.0, &[]);
    let sent = send(&[&top], recv.port, &["--json"]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert_same_tree(&top, &dst.join("tree"));
    let report = json(&sent);
    assert_eq!(report["files"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(report["dirs"], 103, "{}", report["dirs"]);
}

/// Files in place under `dst` (partial files and the receiver's list of
/// directories it made not counted), with their sizes.
fn in_place(dst: &Path) -> Vec<(PathBuf, u64)> {
    walk(dst)
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            p.is_file() && !name.ends_with(".sonde-part") && !name.ends_with(".sonde-dirs")
        })
        .map(|p| {
            let len = fs::metadata(&p).expect("meta").len();
            (p, len)
        })
        .collect()
}

#[test]
fn a_cut_tree_resumes_with_only_what_was_missing() {
    let src = TempDir::new("tree-cut");
    let dst = TempDir::new("tree-cut-dst");
    let top = tree(&src.0, 3000, true);
    let total: u64 = in_place(&top).iter().map(|(_, n)| n).sum();
    // A point in the middle, different from run to run.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cut_at = total / 4 + u64::from(nanos) % (total / 2);
    let recv = receiver(&dst.0, &[]);
    let cut = proxy(recv.port, Some(cut_at), None);
    let sent = send(&[&top], cut.port, &[]);
    let got = recv.finish();
    cut.thread.join().expect("proxy");
    assert_eq!(sent.code(), Some(1), "cut at {cut_at}: {}", sent.stderr);
    assert_eq!(got.code(), Some(1), "cut at {cut_at}: {}", got.stderr);
    // Whatever is in place is whole and right.
    let placed = in_place(&dst.0);
    for (path, _) in &placed {
        let source = top.join(path.strip_prefix(dst.join("tree")).expect("under"));
        assert!(
            fs::read(path).ok() == fs::read(&source).ok(),
            "{}",
            path.display()
        );
    }
    let had: u64 = placed.iter().map(|(_, n)| n).sum();

    let recv = receiver(&dst.0, &[]);
    let count = proxy(recv.port, None, None);
    let sent = send(&[&top], count.port, &["--json"]);
    let got = recv.finish();
    count.thread.join().expect("proxy");
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert_same_tree(&top, &dst.join("tree"));
    assert!(
        !dst.join(".tree.sonde-dirs").exists(),
        "the list of directories made outlived the transfer"
    );
    let report = json(&sent);
    let skipped = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["outcome"] == "skipped")
        .count();
    assert_eq!(skipped, placed.len(), "every file in place was skipped");
    // What crossed again: the data that was not in place (less what a
    // partial large file kept), and the announcements (a few hundred
    // bytes a file).
    let moved = report["moved"].as_u64().expect("moved");
    assert!(
        moved <= total - had,
        "moved {moved} of the {} missing",
        total - had
    );
    let wire = count.forwarded.load(Ordering::Relaxed);
    assert!(
        wire <= total - had + 300 * 3000,
        "{wire} bytes crossed for {} missing",
        total - had
    );
}

#[test]
fn a_receiver_killed_mid_tree_leaves_only_verified_files() {
    let src = TempDir::new("tree-kill");
    let dst = TempDir::new("tree-kill-dst");
    let top = tree(&src.0, 6000, true);
    let total: u64 = in_place(&top).iter().map(|(_, n)| n).sum();
    let mut recv = receiver(&dst.0, &[]);
    let stall = proxy_with(recv.port, Some(total / 2), None, true);
    let mut cmd = sonde();
    cmd.arg("send")
        .arg(&top)
        .arg(format!("127.0.0.1:{}", stall.port));
    let mut sender = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting send");
    let mut sender_reaper = common::Reaper::new(sender.id());
    let start = Instant::now();
    while stall.forwarded.load(Ordering::Relaxed) < total / 2 {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the sender never got half-way"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL: no chance to tidy up.
    recv.child.kill().expect("killing the receiver");
    let _ = recv.child.wait();
    recv.reaper.disarm();
    // Its receiver gone, the sender fails within its timeout.
    let _ = sender.wait();
    sender_reaper.disarm();
    stall.thread.join().expect("proxy");
    for (path, _) in in_place(&dst.0) {
        let source = top.join(path.strip_prefix(dst.join("tree")).expect("under"));
        assert!(
            fs::read(&path).ok() == fs::read(&source).ok(),
            "{} is in place with other bytes",
            path.display()
        );
    }
    let recv = receiver(&dst.0, &[]);
    let sent = send(&[&top], recv.port, &[]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    assert_eq!(got.code(), Some(0), "{}", got.stderr);
    assert_same_tree(&top, &dst.join("tree"));
}

#[test]
fn a_refused_file_in_the_middle_does_not_stop_the_rest() {
    let src = TempDir::new("tree-refuse");
    let dst = TempDir::new("tree-refuse-dst");
    let top = tree(&src.0, 500, false);
    let theirs = dst.join("tree/d002/f00250");
    fs::create_dir_all(theirs.parent().expect("parent")).expect("dir");
    fs::write(&theirs, b"mine, not yours").expect("in the way");
    let recv = receiver(&dst.0, &["--json"]);
    let sent = send(&[&top], recv.port, &["--json"]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(4), "{}", sent.stderr);
    assert_eq!(got.code(), Some(4), "{}", got.stderr);
    common::assert_contains(
        &sent.stderr,
        "tree/d002/f00250: refused: it exists and differs",
    );
    assert_eq!(fs::read(&theirs).expect("still there"), b"mine, not yours");
    let placed = in_place(&dst.join("tree"));
    assert_eq!(placed.len(), 500, "the other 499 and the one in the way");
    let refused: Vec<_> = json(&sent)["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["outcome"] == "refused")
        .map(|f| f["path"].clone())
        .collect();
    assert_eq!(refused, ["tree/d002/f00250"]);
}

#[test]
fn symlinks_are_skipped_or_sent_and_never_point_out() {
    let src = TempDir::new("tree-links");
    let top = src.join("tree");
    fs::create_dir_all(top.join("a")).expect("dir");
    fs::write(top.join("a/file"), b"data").expect("file");
    std::os::unix::fs::symlink("file", top.join("a/inside")).expect("link");
    std::os::unix::fs::symlink("../a/file", top.join("a/up-and-in")).expect("link");
    std::os::unix::fs::symlink("../../../outside", top.join("a/out")).expect("link");
    std::os::unix::fs::symlink("/etc/passwd", top.join("a/absolute")).expect("link");

    let plain = TempDir::new("tree-links-plain");
    let recv = receiver(&plain.0, &[]);
    let sent = send(&[&top], recv.port, &[]);
    assert_eq!(recv.finish().code(), Some(0));
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    common::assert_contains(&sent.stderr, "skipping symlink");
    assert!(plain.join("tree/a/file").is_file());
    assert!(fs::symlink_metadata(plain.join("tree/a/inside")).is_err());

    let linked = TempDir::new("tree-links-sent");
    let recv = receiver(&linked.0, &[]);
    let sent = send(&[&top], recv.port, &["--symlinks"]);
    let got = recv.finish();
    assert_eq!(sent.code(), Some(4), "{}", sent.stderr);
    assert_eq!(got.code(), Some(4), "{}", got.stderr);
    let link = |name: &str| fs::read_link(linked.join("tree/a").join(name)).ok();
    assert_eq!(link("inside"), Some(PathBuf::from("file")));
    assert_eq!(link("up-and-in"), Some(PathBuf::from("../a/file")));
    assert_eq!(link("out"), None, "a link out of the directory was made");
    assert_eq!(link("absolute"), None, "an absolute link was made");
    common::assert_contains(&got.stderr, "tree/a/out: not made");
    common::assert_contains(&sent.stderr, "tree/a/absolute: not made");
    assert_eq!(
        fs::read(linked.join("tree/a/inside")).expect("through"),
        b"data"
    );
}
