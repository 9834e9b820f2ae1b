//! Servers the bench starts itself, from a command template, for sweeps, `compare` and runs
//! given `--server-cmd`.
//!
//! A [`CommandTemplate`] is a command line split into words the way a POSIX shell splits them
//! (whitespace separates words; `'...'` is literal; `"..."` keeps spaces and takes `\"`, `\\`, `\$`
//! and `` \` `` escapes; a backslash outside quotes escapes the next character), with placeholders
//! substituted in each word after splitting, so a substituted value never splits a word:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{port}` | a free loopback port the server must listen on |
//! | `{dir}` | a fresh empty directory for the server's files (also its working directory) |
//! | `{policy}` | the cache policy: `dac`, `value`, `shortcut`, `none` |
//! | `{bytes}` | the cache budget in bytes |
//! | `{rtt}` | the injected round-trip delay, exact, with a unit (`0ns`, `1600ns`, `5us`) |
//! | `{rtt_ns}` | the same in nanoseconds, a bare integer |
//! | `{cores}` | the number of worker cores |
//! | `{durability}` | `memory` or `flush` |
//!
//! `{{` and `}}` stand for literal braces. An unknown placeholder is an error when the template is
//! parsed, and a placeholder whose setting was not given is an error when it is rendered, so a
//! sweep never starts a server with a setting silently left out.
//!
//! A [`ServerProcess`] runs one rendered command on 127.0.0.1, with its output in a log file in its
//! directory, waits until it answers `PING`, and is killed (and its directory removed) when
//! dropped, also when the bench unwinds from a panic.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dinomo_dataplane::config::Named;

use crate::constants::{SERVER_LOG_TAIL_BYTES, SERVER_PROBE_INTERVAL, SERVER_START_ATTEMPTS_MAX};
use crate::info::DinomoStats;
use crate::resp_client::{CallReply, RespConnection, RespTarget};
use crate::target::{Connection, Launched, Launcher, ServerSettings, Target, TargetError};
use crate::units::format_duration_exact;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server command template {template:?}: {reason}")]
    Template { template: String, reason: String },
    #[error("the server command uses {{{placeholder}}} but no {option} was given")]
    MissingSetting {
        placeholder: &'static str,
        option: &'static str,
    },
    #[error("cannot prepare the server's directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the server exited ({status}) before accepting connections: {command}\n{log}")]
    Exited {
        command: String,
        status: ExitStatus,
        log: String,
    },
    #[error("the server did not answer PING within {timeout:?}: {command}\n{log}")]
    Timeout {
        command: String,
        timeout: Duration,
        log: String,
    },
}

/// A placeholder of a server command template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    Port,
    Dir,
    Policy,
    Bytes,
    Rtt,
    RttNs,
    Cores,
    Durability,
}

impl Placeholder {
    const ALL: [Placeholder; 8] = [
        Placeholder::Port,
        Placeholder::Dir,
        Placeholder::Policy,
        Placeholder::Bytes,
        Placeholder::Rtt,
        Placeholder::RttNs,
        Placeholder::Cores,
        Placeholder::Durability,
    ];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Port => "port",
            Placeholder::Dir => "dir",
            Placeholder::Policy => "policy",
            Placeholder::Bytes => "bytes",
            Placeholder::Rtt => "rtt",
            Placeholder::RttNs => "rtt_ns",
            Placeholder::Cores => "cores",
            Placeholder::Durability => "durability",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Placeholder),
}

/// A server command line with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    text: String,
    words: Vec<Vec<Piece>>,
}

/// What a rendered template's placeholders stand for.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    pub port: u16,
    pub dir: &'a Path,
    pub settings: &'a ServerSettings,
}

impl CommandTemplate {
    /// Splits `text` into words and finds the placeholders in each.
    pub fn parse(text: &str) -> Result<Self, ServerError> {
        let error = |reason: &str| ServerError::Template {
            template: text.to_owned(),
            reason: reason.to_owned(),
        };
        let words = split_words(text).map_err(&error)?;
        if words.is_empty() {
            return Err(error("it is empty"));
        }
        let words = words
            .iter()
            .map(|word| parse_pieces(word))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| error(&reason))?;
        Ok(Self {
            text: text.to_owned(),
            words,
        })
    }

    /// A template from words already split (no shell quoting), with placeholders in them.
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<Self, ServerError> {
        let text = words
            .iter()
            .map(|w| shell_quote(w.as_ref()))
            .collect::<Vec<_>>()
            .join(" ");
        let error = |reason: String| ServerError::Template {
            template: text.clone(),
            reason,
        };
        if words.is_empty() {
            return Err(error("it is empty".to_owned()));
        }
        let words = words
            .iter()
            .map(|word| parse_pieces(word.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        Ok(Self { text, words })
    }

    /// The template as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The placeholders the template uses.
    pub fn placeholders(&self) -> BTreeSet<Placeholder> {
        self.words
            .iter()
            .flatten()
            .filter_map(|piece| match piece {
                Piece::Var(var) => Some(*var),
                Piece::Text(_) => None,
            })
            .collect()
    }

    /// Whether the template uses `placeholder`.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.placeholders().contains(&placeholder)
    }

    /// The command's words with every placeholder substituted.
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<Vec<String>, ServerError> {
        let settings = values.settings;
        let missing =
            |placeholder: Placeholder, option: &'static str| ServerError::MissingSetting {
                placeholder: placeholder.name(),
                option,
            };
        let mut argv = Vec::with_capacity(self.words.len());
        for word in &self.words {
            let mut rendered = String::new();
            for piece in word {
                match piece {
                    Piece::Text(text) => rendered.push_str(text),
                    Piece::Var(var) => {
                        let value = match var {
                            Placeholder::Port => values.port.to_string(),
                            Placeholder::Dir => values.dir.display().to_string(),
                            Placeholder::Policy => settings
                                .cache_policy
                                .ok_or_else(|| missing(*var, "cache policy"))?
                                .name()
                                .to_owned(),
                            Placeholder::Bytes => settings
                                .cache_bytes
                                .ok_or_else(|| missing(*var, "cache budget (--cache-bytes)"))?
                                .to_string(),
                            Placeholder::Rtt => {
                                format_duration_exact(settings.rtt_delay.ok_or_else(|| {
                                    missing(*var, "round-trip delay (--rtt-delay)")
                                })?)
                            }
                            Placeholder::RttNs => settings
                                .rtt_delay
                                .ok_or_else(|| missing(*var, "round-trip delay (--rtt-delay)"))?
                                .as_nanos()
                                .to_string(),
                            Placeholder::Cores => settings
                                .cores
                                .ok_or_else(|| missing(*var, "core count (--cores)"))?
                                .to_string(),
                            Placeholder::Durability => settings
                                .durability
                                .ok_or_else(|| missing(*var, "durability (--durability)"))?
                                .name()
                                .to_owned(),
                        };
                        rendered.push_str(&value);
                    }
                }
            }
            argv.push(rendered);
        }
        Ok(argv)
    }
}

/// Splits a command line into words like a POSIX shell, without expansions.
fn split_words(text: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("it ends with a lone backslash"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Finds the `{placeholder}`s of one word.
fn parse_pieces(word: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| format!("a brace is not closed in {word:?}"))?;
            let name = &after[..end];
            let var = Placeholder::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    let known: Vec<String> = Placeholder::ALL
                        .iter()
                        .map(|p| format!("{{{}}}", p.name()))
                        .collect();
                    format!(
                        "{{{name}}} is not a placeholder (known: {}; write {{{{ for a brace)",
                        known.join(" ")
                    )
                })?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        } else {
            return Err(format!("a lone }} in {word:?} (write }}}} for a brace)"));
        }
    }
    text.push_str(rest);
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Quotes a word for display so that pasting it into a shell gives the same word back.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%{}".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Joins words for display with [`shell_quote`].
pub fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ServerError::Port)?;
    Ok(listener.local_addr().map_err(ServerError::Port)?.port())
}

/// A fresh directory under the system's temporary directory.
pub fn fresh_dir(tag: &str) -> Result<PathBuf, ServerError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("dinomo-bench-{}-{tag}-{n}", std::process::id()));
    if path.exists() {
        fs::remove_dir_all(&path).map_err(|source| ServerError::Dir {
            path: path.clone(),
            source,
        })?;
    }
    fs::create_dir_all(&path).map_err(|source| ServerError::Dir {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The last [`SERVER_LOG_TAIL_BYTES`] of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let from = bytes.len().saturating_sub(SERVER_LOG_TAIL_BYTES);
            let tail = String::from_utf8_lossy(&bytes[from..]).into_owned();
            if tail.trim().is_empty() {
                "(the server printed nothing)".to_owned()
            } else {
                format!("server output:\n{tail}")
            }
        }
        Err(error) => format!("(no server output: {error})"),
    }
}

/// A server started by the bench; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    argv: Vec<String>,
}

impl ServerProcess {
    /// Starts `template` with `settings` on a free loopback port and waits up to `timeout` for it
    /// to answer `PING`. A server that exits before accepting is retried on another port, in case
    /// another process took the port in between.
    pub fn start(
        template: &CommandTemplate,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> Result<Self, ServerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(template, settings, timeout) {
                Err(ServerError::Exited { .. }) if attempt < SERVER_START_ATTEMPTS_MAX => {}
                result => return result,
            }
        }
    }

    fn start_once(
        template: &CommandTemplate,
        settings: &ServerSettings,
        timeout: Duration,
    ) -> Result<Self, ServerError> {
        let port = free_port()?;
        let dir = fresh_dir("server")?;
        let argv = template.render(&TemplateValues {
            port,
            dir: &dir,
            settings,
        })?;
        let log_path = dir.join("server.log");
        let dir_error = |source| ServerError::Dir {
            path: log_path.clone(),
            source,
        };
        let log = File::create(&log_path).map_err(dir_error)?;
        let log_err = log.try_clone().map_err(dir_error)?;
        // The server runs in its own directory; a relative program path still means the one the
        // bench was started next to.
        let mut program = PathBuf::from(&argv[0]);
        if program.components().count() > 1
            && program.is_relative()
            && let Ok(cwd) = std::env::current_dir()
        {
            program = cwd.join(program);
        }
        let child = Command::new(&program)
            .args(&argv[1..])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                program: argv[0].clone(),
                source,
            });
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        // From here on, dropping `server` kills the child and removes the directory.
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
            argv,
        };
        server.wait_ready(timeout, &log_path)?;
        Ok(server)
    }

    /// Polls until the server answers `PING` with anything but an error.
    fn wait_ready(&mut self, timeout: Duration, log_path: &Path) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::Exited {
                    command: self.command_line(),
                    status,
                    log: log_tail(log_path),
                });
            }
            if TcpStream::connect_timeout(&self.addr, SERVER_PROBE_INTERVAL * 5).is_ok() {
                let answered = RespConnection::connect(self.addr, 1)
                    .and_then(|mut connection| connection.call(&[b"PING"]));
                if let Ok(CallReply::Text(_)) = answered {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Timeout {
                    command: self.command_line(),
                    timeout,
                    log: log_tail(log_path),
                });
            }
            std::thread::sleep(SERVER_PROBE_INTERVAL);
        }
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The command the server was started with.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The command, quoted for a shell.
    pub fn command_line(&self) -> String {
        shell_join(&self.argv)
    }

    /// The operating system's id of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A RESP target backed by a server the bench started; the server stops when this is dropped.
#[derive(Debug)]
pub struct SpawnedTarget {
    target: RespTarget,
    server: ServerProcess,
}

impl SpawnedTarget {
    /// The server behind the target.
    pub fn server(&self) -> &ServerProcess {
        &self.server
    }
}

impl Target for SpawnedTarget {
    fn label(&self) -> String {
        self.target.label()
    }

    fn connect(&self, in_flight_max: usize) -> Result<Box<dyn Connection + '_>, TargetError> {
        self.target.connect(in_flight_max)
    }

    fn stats(&self) -> Result<Option<DinomoStats>, TargetError> {
        self.target.stats()
    }

    fn server_version(&self) -> Result<Option<String>, TargetError> {
        self.target.server_version()
    }

    fn started_with(&self) -> Option<String> {
        Some(self.server.command_line())
    }
}

/// Starts a fresh server from a template for every launch.
#[derive(Debug, Clone)]
pub struct TemplateLauncher {
    pub template: CommandTemplate,
    pub timeout: Duration,
}

impl TemplateLauncher {
    /// Starts the server and returns it with its target, for callers that want the process too.
    pub fn start(&self, settings: &ServerSettings) -> Result<SpawnedTarget, ServerError> {
        let server = ServerProcess::start(&self.template, settings, self.timeout)?;
        Ok(SpawnedTarget {
            target: RespTarget::new(server.addr()),
            server,
        })
    }
}

impl Launcher for TemplateLauncher {
    fn label(&self) -> String {
        format!("server command: {}", self.template.text())
    }

    fn launch(&self, settings: &ServerSettings) -> Result<Launched, crate::BenchError> {
        Ok(Box::new(self.start(settings)?))
    }
}

/// A RESP server that is already running: it can be "launched" only with default settings, since
/// the bench cannot reconfigure it.
#[derive(Debug, Clone)]
pub struct RunningLauncher {
    pub target: RespTarget,
}

impl Launcher for RunningLauncher {
    fn label(&self) -> String {
        self.target.label()
    }

    fn launch(&self, settings: &ServerSettings) -> Result<Launched, crate::BenchError> {
        if !settings.is_default() {
            return Err(TargetError::SettingUnsupported {
                setting: "server settings",
                reason: format!(
                    "{} cannot be applied to the running server at {}; give --server-cmd so the \
                     bench starts a server with them",
                    settings.given().join(", "),
                    self.target.addr()
                ),
            }
            .into());
        }
        Ok(Box::new(self.target.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dinomo_dataplane::cache::Policy;
    use dinomo_dataplane::config::Durability;

    fn render(template: &str, settings: &ServerSettings) -> Result<Vec<String>, ServerError> {
        CommandTemplate::parse(template)?.render(&TemplateValues {
            port: 7001,
            dir: Path::new("/tmp/d"),
            settings,
        })
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_words(r#"redis-server --port 1 --save "" --x 'a b' c\ d "e\"f" g'h'i"#).unwrap(),
            vec![
                "redis-server",
                "--port",
                "1",
                "--save",
                "",
                "--x",
                "a b",
                "c d",
                "e\"f",
                "ghi"
            ]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a\\").is_err());
    }

    #[test]
    fn substitutes_every_placeholder() {
        let settings = ServerSettings {
            cache_policy: Some(Policy::ShortcutOnly),
            cache_bytes: Some(64 << 20),
            rtt_delay: Some(Duration::from_nanos(1600)),
            cores: Some(2),
            durability: Some(Durability::Flush),
        };
        let argv = render(
            "dinomo serve --port {port} --dir {dir} --cache-policy {policy} --cache-bytes {bytes} \
             --rtt-delay {rtt} --rtt-ns={rtt_ns} --cores {cores} --durability {durability} '{{x}}'",
            &settings,
        )
        .unwrap();
        assert_eq!(
            argv,
            vec![
                "dinomo",
                "serve",
                "--port",
                "7001",
                "--dir",
                "/tmp/d",
                "--cache-policy",
                "shortcut",
                "--cache-bytes",
                "67108864",
                "--rtt-delay",
                "1600ns",
                "--rtt-ns=1600",
                "--cores",
                "2",
                "--durability",
                "flush",
                "{x}",
            ]
        );
    }

    #[test]
    fn template_errors() {
        assert!(matches!(
            CommandTemplate::parse("x --a {nope}"),
            Err(ServerError::Template { .. })
        ));
        assert!(CommandTemplate::parse("x {port").is_err());
        assert!(CommandTemplate::parse("x }").is_err());
        assert!(CommandTemplate::parse("   ").is_err());
        let missing = render("x --cache {policy}", &ServerSettings::default()).unwrap_err();
        assert!(matches!(
            missing,
            ServerError::MissingSetting {
                placeholder: "policy",
                ..
            }
        ));
        let template = CommandTemplate::parse("x {port} {bytes}").unwrap();
        assert!(template.uses(Placeholder::Bytes));
        assert!(!template.uses(Placeholder::Policy));
    }

    #[test]
    fn quoting_round_trips() {
        let words: Vec<String> = ["redis-server", "--save", "", "it's", "a b", "{port}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(split_words(&shell_join(&words)).unwrap(), words);
        let template = CommandTemplate::from_words(&words).unwrap();
        assert_eq!(template, CommandTemplate::parse(template.text()).unwrap());
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_output() {
        let template = CommandTemplate::parse("sh -c 'echo broken config >&2; exit 3'").unwrap();
        let error = ServerProcess::start(
            &template,
            &ServerSettings::default(),
            Duration::from_secs(5),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, ServerError::Exited { .. }), "{text}");
        assert!(text.contains("broken config"), "{text}");
    }

    #[test]
    fn a_missing_program_is_reported() {
        let template = CommandTemplate::parse("/nonexistent/dinomo-server --port {port}").unwrap();
        assert!(matches!(
            ServerProcess::start(
                &template,
                &ServerSettings::default(),
                Duration::from_secs(1)
            ),
            Err(ServerError::Spawn { .. })
        ));
    }
}
