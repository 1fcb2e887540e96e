//! Throw-away redis-server for tests.
//!
//! [`TestRedis::start`] runs `redis-server` from `PATH` on a free loopback port, with persistence off
//! and its working directory in a temp dir. It is killed when the `TestRedis` is dropped and also when
//! the test process ends without dropping it (a `static`, a panic that aborts, a SIGKILL from a
//! timeout): a small watchdog shell holds a pipe from the test process, and when the kernel closes
//! that pipe at the test process's exit the watchdog kills the server and removes its directory.
//!
//! [`redis_url`] is what most tests want: `TEST_REDIS_URL` when set (a server run by CI or by hand),
//! else one server started on first use and shared by every test in the process. Tests sharing it use
//! channel and key names of their own. Tests that stop and restart Redis start a dedicated
//! `TestRedis` instead.
//!
//! ```no_run
//! let mut redis = duet_testkit::redis::TestRedis::start();
//! let url = redis.url(); // redis://127.0.0.1:<port>/
//! redis.stop();          // the server is gone (as after a crash)
//! redis.start_again();   // same port, empty data
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a fresh redis-server may take to answer `PING`. It is ready in tens of milliseconds;
/// ten seconds leaves room for a machine busy compiling, and still fails a broken start clearly.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between readiness probes while the server starts.
const STARTUP_POLL: Duration = Duration::from_millis(20);

/// Ports tried by [`TestRedis::start`]: a port free a moment ago may be taken by a parallel test
/// before redis-server binds it, so a failed start is retried on a fresh port.
const START_ATTEMPTS: usize = 3;

/// The watchdog: a shell that lives as long as its [`TestRedis`] and reads, one per line, the pid of
/// the current server (an empty line while it is stopped). Its standard input reaches end of file when
/// the test process closes the pipe, on drop or when the process exits for any reason; it then kills
/// the last server it was told of and removes the server's directory (`$0`). It checks that the pid
/// still names a redis-server first, so a pid reused after the server died is never hit.
const WATCHDOG_SCRIPT: &str = r#"pid=
while read -r line; do pid=$line; done
if [ -n "$pid" ] && grep -qa redis-server "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid"; fi
rm -rf "$0""#;

/// A redis-server owned by one test (or, through [`redis_url`], by the test process).
pub struct TestRedis {
    port: u16,
    server: Option<Child>,
    watchdog: Child,
    /// Declared last: removed after the server and watchdog are gone.
    dir: TempDir,
}

impl TestRedis {
    /// Starts a server on a free port. Panics (with the server's log) if it cannot.
    pub fn start() -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("duet-test-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the watchdog shell");
        let mut redis = TestRedis {
            port: 0,
            server: None,
            watchdog,
            dir,
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            redis.port = crate::free_port();
            match redis.launch() {
                Ok(()) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, as in a crash) and waits until it is gone, so its port is closed
    /// and its clients' connections are broken. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // The watchdog forgets the pid first, so it can never act on it once it is reaped.
            self.tell_watchdog("");
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Freezes the server (SIGSTOP), as a Redis stalled by the host: connections stay open and
    /// commands wait. It runs again (SIGCONT) when the returned guard is dropped. Panics if the
    /// server is not running.
    pub fn pause(&self) -> Paused {
        let pid = self
            .server
            .as_ref()
            .expect("redis-server is not running")
            .id();
        signal(pid, "STOP");
        Paused { pid }
    }

    /// Starts the server again on the same port (with no data: persistence is off). Panics if it
    /// cannot, or if it is running.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "redis-server is already running");
        if let Err(e) = self.launch() {
            panic!("could not restart redis-server on port {}: {e}", self.port);
        }
    }

    /// Starts redis-server on `self.port` with its files in the temp dir; returns once it answers
    /// `PING`, or an error with the end of its log.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut server = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server (is it on PATH?): {e}"))?;
        self.tell_watchdog(&server.id().to_string());
        match wait_ready(self.port, &mut server) {
            Ok(()) => {
                self.server = Some(server);
                Ok(())
            }
            Err(e) => {
                self.server = Some(server);
                self.stop();
                Err(format!("{e}; log:\n{}", log_tail(&log)))
            }
        }
    }

    fn tell_watchdog(&mut self, line: &str) {
        // If the watchdog is gone, only the exit-time clean-up is lost; the test itself is fine.
        if let Some(stdin) = self.watchdog.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }
}

/// A server frozen by [`TestRedis::pause`]; dropping this lets it run again.
#[must_use = "the server runs again when this is dropped"]
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.pid, "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid} failed");
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
        // Closing its input lets the watchdog finish (nothing to kill) and remove the directory.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// The URL of a Redis for tests: `TEST_REDIS_URL` if set, else a server started once for the whole
/// test process (and killed when it exits).
pub fn redis_url() -> String {
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        if !url.trim().is_empty() {
            return url;
        }
    }
    static SHARED: OnceLock<TestRedis> = OnceLock::new();
    SHARED.get_or_init(TestRedis::start).url()
}

/// Polls until the server answers `PING` on `port`; fails if it exits or does not answer in time.
fn wait_ready(port: u16, server: &mut Child) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if answers_ping(addr) {
            return Ok(());
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!(
                "redis-server on port {port} exited during start-up ({status})"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}"
            ));
        }
        sleep(STARTUP_POLL);
    }
}

fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, STARTUP_POLL * 10) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(STARTUP_POLL * 10));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
