//! Child processes of the `dinomo` binary for the multi-process tests: started on
//! 127.0.0.1:0 with the bound port read from the child's stdout, their stderr echoed when a test
//! fails, killed when their handle drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline that turns a hung child or wait into a failure.
pub const HANG: Duration = Duration::from_secs(30);
/// The cluster token the tests use.
pub const TOKEN: &str = "memnode-test-token";

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "dinomo-tools-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    /// A token file readable by its owner only.
    pub fn token_file(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path("token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `dinomo` subcommand: its stdout lines arrive on a channel, its stderr accumulates.
pub struct Proc {
    name: &'static str,
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    addr: Option<SocketAddr>,
}

impl Proc {
    pub fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dinomo"))
            .arg(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dinomo");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name,
            child,
            stdout,
            stderr,
            addr: None,
        }
    }

    /// Starts a server and waits for its `listening on` line.
    pub fn start(name: &'static str, args: &[&str]) -> Proc {
        let mut node = Proc::spawn(name, args);
        let line = node
            .stdout
            .recv_timeout(HANG)
            .unwrap_or_else(|e| panic!("no `listening on` line ({e}); stderr:\n{}", node.stderr()));
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"));
        node.addr = Some(addr.parse().expect("a socket address"));
        node
    }

    /// Records the address a server started with `spawn` printed.
    pub fn set_addr(&mut self, addr: &str) {
        self.addr = Some(addr.parse().expect("a socket address"));
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("started")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text` (it is written before the `listening on` line, but
    /// the reader thread may not have collected it yet).
    pub fn wait_stderr(&self, text: &str) {
        let deadline = Instant::now() + HANG;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "stderr never said {text:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the node did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- dinomo {} stderr ---\n{}--- end ---",
                self.name,
                self.stderr()
            );
        }
    }
}
