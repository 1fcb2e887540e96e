//! Throw-away PostgreSQL for tests.
//!
//! Two ways in:
//!
//! - [`fresh_database_url`] (async): the URL of a brand-new, empty database. Each test takes its own,
//!   so tests never see each other's rows and can run in parallel. The databases live on
//!   - the server named by `TEST_DATABASE_URL` when it is set (a URL whose user may `CREATE DATABASE`,
//!     e.g. `postgres://postgres@127.0.0.1:5432/postgres`); the databases this process created there
//!     are dropped when it exits (needs `psql` on the `PATH`; otherwise they stay, named
//!     `duet_test_<token>_<n>`);
//!   - otherwise ONE throw-away server per test process, started on first use.
//! - [`TestPostgres::start`] (async): a dedicated server that the test owns and may
//!   [`stop`](TestPostgres::stop) and [`start_again`](TestPostgres::start_again) on the same port, for
//!   outage tests; [`TestPostgres::fresh_database_url`] creates databases on it.
//!
//! Everything that waits on the server is async (the programs run through `tokio::process`), so a
//! test can stop the database while its app keeps serving on the same runtime.
//!
//! A throw-away server is `initdb` + `pg_ctl` from the machine's binaries (the newest
//! `/usr/lib/postgresql/<version>/bin`, else the `PATH`), in a temp dir, on a free port of 127.0.0.1,
//! with its unix socket in the temp dir and durability off (`fsync`, `full_page_writes`,
//! `synchronous_commit`) because test data is worthless. As root (CI, containers), where `initdb` and
//! `postgres` refuse to run, they run as the `postgres` system user through `runuser`.
//!
//! Clean-up does not rely on destructors (statics are never dropped, and a test process may be
//! killed): each server gets a small watchdog shell, in its own process group so Ctrl-C does not take
//! it down, whose stdin is a pipe held open by the test process. When the process ends, however it
//! ends, the kernel closes the pipe; the watchdog then stops the server (`-m immediate`) and removes
//! its directory. Dropping a [`TestPostgres`] does the same at once.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use tokio::sync::OnceCell;

/// The environment variable naming an existing server to create test databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";
/// Seconds `pg_ctl` waits for the server to start or stop before giving up.
const PG_CTL_WAIT_SECS: &str = "60";
/// Attempts at starting a server, each on a new port, when the chosen port was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// Settings appended to `postgresql.conf` (the socket directory is added per server).
const TEST_SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
synchronous_commit = off
max_connections = 200
shared_buffers = 32MB
";

/// Watchdog for a throw-away server: `$1` = 1 to run as `postgres`, `$2` = pg_ctl, `$3` = data dir,
/// `$4` = directory to remove.
const LOCAL_CLEANUP: &str = r#"
read -r _ || :
stop() {
    if [ "$1" = 1 ]; then
        runuser -u postgres -- "$2" stop -D "$3" -m immediate -w >/dev/null 2>&1
    else
        "$2" stop -D "$3" -m immediate -w >/dev/null 2>&1
    fi
}
# Retried: the process may have died while its initdb or pg_ctl start was still running, and they
# go on writing into the directory for a moment.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    stop "$@"
    rm -rf -- "$4" 2>/dev/null
    [ -e "$4" ] || exit 0
    sleep 1
done
"#;

/// Watchdog for `TEST_DATABASE_URL`: drops the databases named `$1*` on `$DUET_ADMIN_URL`.
const EXTERNAL_CLEANUP: &str = r#"
read -r _ || :
command -v psql >/dev/null 2>&1 || exit 0
psql "$DUET_ADMIN_URL" -XAtq -c "SELECT datname FROM pg_database WHERE starts_with(datname, '$1')" |
while read -r db; do
    psql "$DUET_ADMIN_URL" -Xq -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
done
"#;

/// The URL of a brand-new, empty database, for one test.
///
/// Call it from a tokio runtime (`#[tokio::test]`, `#[actix_web::test]`). The first call in a process
/// takes a second or so (it starts the shared server). Panics with the reason if PostgreSQL cannot
/// be started or reached: a test cannot go on without it.
pub async fn fresh_database_url() -> String {
    let admin = shared().await.unwrap_or_else(|e| panic!("{e}")).admin_url();
    create_database_on(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e:#}"))
}

/// A dedicated throw-away PostgreSQL server. Stopped and removed when dropped, or when the process
/// exits if it never is.
pub struct TestPostgres {
    bin_dir: PathBuf,
    /// Whether the server's programs must run as the `postgres` user (we are root).
    as_postgres: bool,
    /// The temp dir: data directory, unix socket, logs.
    root: PathBuf,
    data: PathBuf,
    port: u16,
    /// Dropped last (field order): closing its pipe stops the server and removes `root`.
    _watchdog: Watchdog,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("port", &self.port)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl TestPostgres {
    /// Starts a new server and waits until it accepts connections (about a second). Panics with
    /// the server's log if it cannot start; [`TestPostgres::try_start`] returns the error instead.
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .unwrap_or_else(|e| panic!("cannot start a test PostgreSQL: {e:#}"))
    }

    /// Like [`TestPostgres::start`], returning the error instead of panicking.
    pub async fn try_start() -> anyhow::Result<Self> {
        let bin_dir = pg_bin_dir()?;
        let as_postgres = running_as_root().await?;
        let root = tempfile::Builder::new()
            .prefix("duet-pg-")
            .tempdir()
            .context("create a temp dir for PostgreSQL")?
            .keep();
        let data = root.join("data");
        // Before anything else can fail: from here on, the directory goes when we do.
        let watchdog = Watchdog::spawn(
            LOCAL_CLEANUP,
            &[
                if as_postgres { "1" } else { "0" }.as_ref(),
                bin_dir.join("pg_ctl").as_os_str(),
                data.as_os_str(),
                root.as_os_str(),
            ],
            None,
        )?;
        if as_postgres {
            let (uid, gid) = postgres_ids().await?;
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .with_context(|| format!("chown {} to postgres", root.display()))?;
        }
        let mut server = Self {
            bin_dir,
            as_postgres,
            root,
            data,
            port: 0,
            _watchdog: watchdog,
        };
        server.init().await?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            server.port = crate::free_port();
            match server.pg_ctl_start().await {
                Ok(()) => return Ok(server),
                // Someone took the port between `free_port` and the bind: try another.
                Err(e) if format!("{e:#}").contains("could not bind") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    /// The TCP port the server listens on (127.0.0.1); it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's main process (the postmaster), while it runs: the first line of its
    /// `postmaster.pid`. Every backend and helper process of the server is its child.
    pub fn server_pid(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// The URL of database `db` on this server (user `postgres`, no password).
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database on this server and returns its URL.
    pub async fn fresh_database_url(&self) -> String {
        create_database_on(&self.url_for("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e:#}"))
    }

    /// Stops the server (`-m fast`: open connections are closed at once) and waits until it is
    /// down. `&mut`: one `pg_ctl` at a time on a data directory. Panics if `pg_ctl` fails.
    pub async fn stop(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.args(["stop", "-m", "fast", "-w", "-t", PG_CTL_WAIT_SECS, "-D"])
            .arg(&self.data);
        if let Err(e) = run(cmd, "pg_ctl stop").await {
            panic!("cannot stop the test PostgreSQL: {e:#}");
        }
    }

    /// Starts the stopped server again on the same port and waits until it accepts connections.
    /// Panics with the server's log if it cannot start.
    pub async fn start_again(&mut self) {
        if let Err(e) = self.pg_ctl_start().await {
            panic!("cannot restart the test PostgreSQL: {e:#}");
        }
    }

    /// The server's log, for a test that wants to show it on failure.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    async fn init(&self) -> anyhow::Result<()> {
        let mut cmd = self.command("initdb");
        cmd.args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(&self.data);
        run(cmd, "initdb").await?;
        let settings = format!(
            "\n# duet-testkit\n{TEST_SETTINGS}unix_socket_directories = '{}'\n",
            self.root.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .context("write postgresql.conf")
    }

    async fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let log = self.root.join("postgres.log");
        let mut cmd = self.command("pg_ctl");
        cmd.args([
            "start",
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "-o",
            &format!("-p {}", self.port),
            "-l",
        ])
        .arg(&log)
        .arg("-D")
        .arg(&self.data);
        // pg_ctl hands the server `/dev/null` and the log file, so our pipes close when it exits.
        run(cmd, "pg_ctl start").await.with_context(|| {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("server log ({}):\n{tail}", log.display())
        })?;
        Ok(())
    }

    /// A command for one of the server's programs, as the `postgres` user when we are root. It runs
    /// in the temp dir: the `postgres` user may not be allowed into the current directory.
    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.root);
        cmd
    }
}

/// A watchdog shell whose stdin pipe we hold: closing it (drop, or process exit) triggers its script.
struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    fn spawn(
        script: &str,
        args: &[&std::ffi::OsStr],
        admin_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("duet-testkit-watchdog")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C aimed at the tests must not kill the clean-up.
            .process_group(0);
        if let Some(url) = admin_url {
            // In the environment rather than argv, so a password does not show in `ps`.
            cmd.env("DUET_ADMIN_URL", url);
        }
        let mut child = cmd.spawn().context("spawn the clean-up watchdog (sh)")?;
        let pipe = child.stdin.take();
        Ok(Self { child, pipe })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.pipe.take());
        // Wait for the clean-up so a dropped server is really gone (and leaves no zombie).
        let _ = self.child.wait();
    }
}

/// The server that [`fresh_database_url`] creates databases on, one per process.
enum Shared {
    Local(TestPostgres),
    External {
        admin_url: String,
        _watchdog: Watchdog,
    },
}

impl Shared {
    fn admin_url(&self) -> String {
        match self {
            Shared::Local(server) => server.url_for("postgres"),
            Shared::External { admin_url, .. } => admin_url.clone(),
        }
    }
}

/// The shared server, started on first use. A failure is kept (as text) so every test reports the
/// same cause at once instead of each retrying a slow start.
async fn shared() -> Result<&'static Shared, String> {
    static SHARED: OnceCell<Result<Shared, String>> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let started = match std::env::var(TEST_DATABASE_URL) {
                Ok(url) if !url.trim().is_empty() => {
                    Watchdog::spawn(EXTERNAL_CLEANUP, &[database_prefix().as_ref()], Some(&url))
                        .map(|w| Shared::External {
                            admin_url: url,
                            _watchdog: w,
                        })
                }
                _ => TestPostgres::try_start().await.map(Shared::Local),
            };
            started.map_err(|e| format!("cannot start the shared test PostgreSQL: {e:#}"))
        })
        .await
        .as_ref()
        .map_err(Clone::clone)
}

/// `duet_test_<token>_`: the token is random per process, so the external clean-up drops only the
/// databases of this process even when several test processes share a server.
fn database_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        format!(
            "duet_test_{}_",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    })
}

async fn create_database_on(admin_url: &str) -> anyhow::Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = format!(
        "{}{}",
        database_prefix(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to {}", redact(admin_url)))?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    drop(client);
    let _ = driver.await;
    with_database(admin_url, &name)
}

/// `url` with its database (the path) replaced by `db`; user, host, port and query are kept.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some(scheme_end) = base.find("://").map(|i| i + 3) else {
        bail!("{TEST_DATABASE_URL} must be a postgres:// URL");
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/<version>/bin`
/// (Debian's layout, where they are not on the `PATH`), else the `PATH`.
fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    let debian = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    if let Some(bin) = debian {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .context("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql")
}

async fn running_as_root() -> anyhow::Result<bool> {
    Ok(id(&["-u"]).await? == 0)
}

async fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    Ok((
        id(&["-u", "postgres"]).await?,
        id(&["-g", "postgres"]).await?,
    ))
}

/// Runs `id ARGS` and parses the number it prints (std has no safe `geteuid`/`getpwnam`).
async fn id(args: &[&str]) -> anyhow::Result<u32> {
    let mut cmd = Command::new("id");
    cmd.args(args);
    let out = run(cmd, "id").await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("`id {}` printed {text:?}", args.join(" ")))
}

/// Runs a command to completion without blocking the runtime; an error carries its output.
async fn run(cmd: Command, what: &str) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await.with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h", "x").unwrap(),
            "postgresql://h/x"
        );
        assert!(with_database("host=h dbname=postgres", "x").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn a_dedicated_server_stops_restarts_and_cleans_up() {
        let mut pg = TestPostgres::start().await;
        let root = pg.root.clone();
        let addr = ("127.0.0.1", pg.port());
        let url = pg.fresh_database_url().await;
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(url.ends_with(&format!("/{db}")), "{url} names {db}");
        let fsync: String = client.query_one("SHOW fsync", &[]).await.unwrap().get(0);
        assert_eq!(fsync, "off");
        pg.stop().await;
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "server stopped"
        );
        assert!(
            client.simple_query("SELECT 1").await.is_err(),
            "its connections are gone"
        );
        pg.start_again().await;
        assert!(
            std::net::TcpStream::connect(addr).is_ok(),
            "server listens again"
        );
        drop(pg);
        assert!(!root.exists(), "temp dir removed on drop");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "server gone after drop"
        );
    }
}
