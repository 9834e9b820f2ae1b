//! Child processes of the built binaries for the multi-process tests.
//!
//! A [`Program`] names a binary (`Program(env!("CARGO_BIN_EXE_dinomo"))`: the path is known only
//! to the test crate that builds it). [`Program::start`] runs a subcommand and waits for the one
//! line a server prints on stdout, `listening on <addr>`; [`Program::spawn`] only starts it. The
//! child's stdout lines arrive on a channel, its stderr accumulates in the background and is
//! echoed when a test panics, and the child is killed when its [`Proc`] drops. [`start_memnode`]
//! is the memory node the multi-process tests of `dinomo kn` run against.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{HANG, TempDir};

/// A built binary.
#[derive(Debug, Clone, Copy)]
pub struct Program(pub &'static str);

impl Program {
    /// Runs `program subcommand args...`.
    pub fn spawn(self, subcommand: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(self.0);
        command.arg(subcommand).args(args);
        let name = std::path::Path::new(self.0)
            .file_name()
            .map_or_else(|| self.0.into(), |n| n.to_string_lossy());
        Proc::spawn(command, format!("{name} {subcommand}"))
    }

    /// Runs a server subcommand and waits for its `listening on <addr>` line.
    pub fn start(self, subcommand: &str, args: &[&str]) -> Proc {
        let mut node = self.spawn(subcommand, args);
        let line = node
            .stdout
            .recv_timeout(HANG)
            .unwrap_or_else(|e| panic!("no `listening on` line ({e}); stderr:\n{}", node.stderr()));
        node.set_addr(
            line.strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}")),
        );
        node
    }
}

/// `dinomo memnode` (`dinomo` is the binary) on a new 64 MiB pool `pool` in `dir` with 256 KiB
/// blocks and memory durability, serving on a free loopback port with the token of
/// [`TempDir::token_file`].
pub fn start_memnode(dinomo: Program, dir: &TempDir) -> Proc {
    let pool = dir.path("pool");
    let token = dir.token_file();
    dinomo.start(
        "memnode",
        &[
            "--pool",
            pool.to_str().expect("utf-8"),
            "--create",
            "--size",
            "64MiB",
            "--block-size",
            "256KiB",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().expect("utf-8"),
            "--durability",
            "memory",
        ],
    )
}

/// A running child: its stdout lines arrive on [`Proc::stdout`], its stderr accumulates.
pub struct Proc {
    label: String,
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    addr: Option<SocketAddr>,
}

impl Proc {
    /// Starts `command` with piped stdout and stderr; `label` names it in failure output.
    pub fn spawn(mut command: Command, label: String) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label}: {e}"));
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            label,
            child,
            stdout,
            stderr,
            addr: None,
        }
    }

    /// Records the address a server started with [`Program::spawn`] announced.
    pub fn set_addr(&mut self, addr: &str) {
        self.addr = Some(
            addr.parse()
                .unwrap_or_else(|e| panic!("{addr:?} is not a socket address: {e}")),
        );
    }

    /// The announced address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the server announced its address")
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until stderr contains `text` (a line written before the `listening on` line may not
    /// have been collected yet).
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

    /// Sends the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the child to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.label);
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
                "--- {} stderr ---\n{}--- end ---",
                self.label,
                self.stderr()
            );
        }
    }
}
