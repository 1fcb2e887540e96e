//! A service binary run as a real process for a test: a free port, a clean environment, its log
//! kept in a file, optionally a low open-files limit (through util-linux's `prlimit`), stopped with
//! SIGTERM. And the hostile-connection scenarios every service must pass
//! ([`silent_connections_are_closed_after_the_handshake_timeout`],
//! [`a_silent_flood_never_starves_healthz`]).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to answer `/healthz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running service process.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `bin` with only `PATH`, `PORT`, `HOST`, `DUET_DATA_DIR` (a fresh temp dir) and `env`
    /// set, waits until `/healthz` answers 200. With `open_files`, the process runs with that
    /// open-files limit (soft and hard); `None` is returned, with a note, when `prlimit` is missing.
    pub async fn start(bin: &str, env: &[(&str, &str)], open_files: Option<u64>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("service.log");
        let port = crate::free_port();
        let mut cmd = match open_files {
            Some(n) => {
                if Command::new("prlimit").arg("--version").output().is_err() {
                    eprintln!("skipped: `prlimit` (util-linux) is not installed");
                    return None;
                }
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DUET_DATA_DIR", dir.path().join("data"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            );
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut service = Self {
            child,
            addr,
            base: format!("http://{addr}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if healthz(&service.base, Duration::from_secs(1)).await == Ok(200) {
                return Some(service);
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("{bin} exited with {status}:\n{}", service.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = service.child.kill();
        panic!("{bin} did not become healthy:\n{}", service.log());
    }

    /// What the process has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (at most 30 s).
    pub fn stop(mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET /healthz`, or why there is none within `timeout`.
pub async fn healthz(base: &str, timeout: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // A fresh connection each time, as a load balancer's probe makes.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(format!("{base}/healthz")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Opens up to `n` TCP connections to `addr` that never send a byte (stops at the first that
/// cannot connect within a second).
pub fn open_silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                s.set_nonblocking(true).expect("non-blocking");
                streams.push(s);
            }
            Err(_) => break,
        }
    }
    streams
}

/// How many of `streams` the server has closed (end of stream or reset), waiting up to `within`
/// for all of them. What the server sent before closing (a 408, say) is read and ignored.
pub fn count_closed(streams: &mut [TcpStream], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut closed = vec![false; streams.len()];
    let mut buf = [0u8; 512];
    loop {
        for (s, done) in streams.iter_mut().zip(closed.iter_mut()) {
            while !*done {
                match s.read(&mut buf) {
                    Ok(0) => *done = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => *done = true,
                }
            }
        }
        let n = closed.iter().filter(|c| **c).count();
        if n == streams.len() || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Silent TCP connections are closed after `DUET_HTTP__HANDSHAKE_TIMEOUT_MS` (set to 1 s here),
/// not before, and the service keeps answering.
pub async fn silent_connections_are_closed_after_the_handshake_timeout(
    bin: &str,
    env: &[(&str, &str)],
) {
    const SILENT: usize = 50;
    let mut env = env.to_vec();
    env.push(("DUET_HTTP__HANDSHAKE_TIMEOUT_MS", "1000"));
    let service = Service::start(bin, &env, None).await.expect("started");
    let t0 = Instant::now();
    let mut silent = open_silent(service.addr, SILENT);
    assert_eq!(silent.len(), SILENT);
    let early = count_closed(&mut silent, Duration::from_millis(600));
    assert_eq!(early, 0, "closed before the timeout");
    let closed = count_closed(&mut silent, Duration::from_millis(3000));
    assert_eq!(
        closed,
        SILENT,
        "every silent connection is closed within about the 1 s timeout (after {:?})",
        t0.elapsed()
    );
    assert_eq!(
        healthz(&service.base, Duration::from_secs(2)).await,
        Ok(200)
    );
    let status = service.stop();
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
}

/// The open-files limit for [`a_silent_flood_never_starves_healthz`]: far fewer than the silent
/// connections it opens.
pub const FLOOD_OPEN_FILES: u64 = 64;

/// Under an open-files limit of [`FLOOD_OPEN_FILES`], 200 silent connections held open do not keep
/// `/healthz` from answering (the longest-silent ones are closed to make room, with a warning in
/// the log), and the service is healthy and stops cleanly once they are gone.
pub async fn a_silent_flood_never_starves_healthz(bin: &str, env: &[(&str, &str)]) {
    const SILENT: usize = 200;
    let Some(service) = Service::start(bin, env, Some(FLOOD_OPEN_FILES)).await else {
        return;
    };
    let addr = service.addr;
    let mut silent = tokio::task::spawn_blocking(move || open_silent(addr, SILENT))
        .await
        .unwrap();
    assert!(
        silent.len() as u64 > FLOOD_OPEN_FILES,
        "only {} silent connections could be opened",
        silent.len()
    );
    for probe in 0..5 {
        let t0 = Instant::now();
        let status = healthz(&service.base, Duration::from_secs(2)).await;
        assert_eq!(
            status,
            Ok(200),
            "probe {probe} while {} silent connections are held (after {:?}); log:\n{}",
            silent.len(),
            t0.elapsed(),
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = service.log();
    assert!(
        log.contains("connection limit reached"),
        "a clear line says the limit was reached; log:\n{log}"
    );
    assert!(
        !log.contains("Too many open files"),
        "the limit keeps accept from running out of files; log:\n{log}"
    );
    let held = silent.len();
    let closed = count_closed(&mut silent, Duration::from_secs(2));
    assert!(
        closed + (FLOOD_OPEN_FILES as usize) >= held,
        "the server closed {closed} of {held} silent connections to stay under its limit"
    );
    drop(silent);
    for _ in 0..3 {
        assert_eq!(
            healthz(&service.base, Duration::from_secs(2)).await,
            Ok(200)
        );
    }
    let status = service.stop();
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
}
