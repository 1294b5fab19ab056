//! SQLite on a disk that fills up: the write that finds the disk full fails, and once space
//! is freed the next writes succeed on the same store (no restart, no connection left inside
//! a transaction). The disk is a real 2 MiB tmpfs mounted for the test, which needs root:
//! the test is ignored by a plain `cargo test` and run by `scripts/test.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use spire_datastore::{DataStore, DatabaseType, JoinToken, SqlConfig, SqlStore};

/// A tmpfs mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with a file of zeros until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    path
}

fn token(i: usize) -> JoinToken {
    JoinToken {
        token: format!("token-{i:06}-{}", "x".repeat(200)),
        expiry: common::now_unix() + 3600,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs; scripts/test.sh runs it"]
async fn sqlite_writes_recover_after_the_disk_was_full() {
    // Ignored by a plain `cargo test`; where it is asked for, it must run.
    let fs = Tmpfs::mount("2m").unwrap_or_else(|e| panic!("a tmpfs is required: {e}"));
    let db = fs.path().join("datastore.sqlite3");
    let store = SqlStore::open(&SqlConfig::new(
        DatabaseType::Sqlite3,
        db.to_string_lossy().to_string(),
    ))
    .await
    .unwrap();
    store.create_join_token(token(0)).await.unwrap();

    // Fill the disk, then write until SQLite says so.
    let filler = fill(fs.path());
    let mut full = None;
    for i in 1..2000 {
        if let Err(e) = store.create_join_token(token(i)).await {
            full = Some(e.to_string());
            break;
        }
    }
    let full = full.expect("a write on a full disk failed");
    assert!(
        full.contains("full") || full.contains("disk"),
        "the error names the full disk: {full}"
    );
    // While the disk stays full, writes keep failing cleanly (and never with a transaction
    // left open on the connection).
    let again = store.create_join_token(token(5000)).await.unwrap_err();
    assert!(
        !again.to_string().contains("transaction depth"),
        "no leaked transaction: {again}"
    );

    // Space is freed: the very next writes succeed, on the same store.
    std::fs::remove_file(&filler).unwrap();
    for i in 10_000..10_050 {
        store
            .create_join_token(token(i))
            .await
            .unwrap_or_else(|e| panic!("write {i} after freeing space: {e}"));
    }
    assert!(
        store
            .fetch_join_token(&token(10_049).token)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .fetch_join_token(&token(0).token)
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;
}
