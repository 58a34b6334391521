//! A real S3 server for tests: moto's (`moto_server`, from PyPI), started on
//! 127.0.0.1 on a port picked here, with one bucket, and always stopped by
//! [`S3Server`]'s drop (also when the test fails). moto is installed once
//! into a venv in a cache directory outside the repository
//! (`$LSVFS_TEST_CACHE`, else `$XDG_CACHE_HOME/lsvfs-test`, else
//! `~/.cache/lsvfs-test`), under a lock so that parallel tests install it
//! once; `.ci/run` installs it before the tests.

use lsvfs::store::S3Store;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What pip installs: moto's server with conditional writes
/// (`If-None-Match: *` on PUT and on completing a multipart upload).
const MOTO: &str = "moto[server]>=5.1";

pub const BUCKET: &str = "lsvfs-test";
pub const KEY_ID: &str = "lsvfs-test-key";
pub const SECRET: &str = "lsvfs-test-secret";

pub struct S3Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The cache directory of test tools.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LSVFS_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    base.join("lsvfs-test")
}

/// `moto_server` in the cached venv, installed first if it is not there.
pub fn moto_server() -> PathBuf {
    let cache = cache_dir();
    let venv = cache.join("moto-venv");
    let server = venv.join("bin/moto_server");
    let done = venv.join(".installed");
    std::fs::create_dir_all(&cache).unwrap();
    let lock = std::fs::File::create(cache.join("moto-venv.lock")).unwrap();
    // Held until `lock` is dropped: one installer at a time.
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?} failed (python3-venv missing?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", MOTO]));
        std::fs::write(&done, MOTO).unwrap();
    }
    drop(lock);
    server
}

/// A port on 127.0.0.1 that nothing listens on (now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// moto accepting any credentials, with bucket [`BUCKET`].
    pub fn start() -> S3Server {
        Self::start_server(None)
    }

    /// moto checking credentials (only keys its IAM made are valid, so
    /// every key a test has is wrong), with bucket [`BUCKET`] made before.
    pub fn start_checking_credentials() -> S3Server {
        Self::start_server(Some(1))
    }

    fn start_server(no_auth_actions: Option<u32>) -> S3Server {
        let server = moto_server();
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("moto.log");
            let port = free_port();
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(&server);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                // Its own process group: the drop stops it and any child.
                .process_group(0);
            if let Some(n) = no_auth_actions {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let mut s = S3Server {
                child: cmd.spawn().unwrap(),
                port,
                log,
                _dir: dir,
            };
            if s.wait_ready() {
                s.http("PUT", &format!("/{BUCKET}"), 200);
                return s;
            }
            // The port was taken meanwhile: try another.
            last_log = s.log_text();
        }
        panic!("moto_server did not start: {last_log}");
    }

    /// Waits until the server answers; false if it exited.
    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "moto_server did not answer within 60 s: {}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One unsigned request (moto accepts it while it checks no
    /// credentials); asserts the status.
    pub fn http(&self, method: &str, path: &str, status: u16) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {answer}"
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment that points at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ]
    }

    /// A store at `s3://bucket/prefix` on this server.
    pub fn store_in(&self, bucket: &str, prefix: &str) -> S3Store {
        let env = self.env();
        let config: Vec<(String, &str)> = env
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        S3Store::open_with(bucket, prefix, &config).unwrap()
    }

    /// A store at `s3://BUCKET/prefix` on this server.
    pub fn store(&self, prefix: &str) -> S3Store {
        self.store_in(BUCKET, prefix)
    }
}

impl S3Server {
    /// Stops the server's processes (SIGSTOP): connections hang, as with
    /// an endpoint gone silent; `resume` lets them go on.
    pub fn pause(&self) {
        // SAFETY: signals the process group this server leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: as in `pause`.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGCONT) };
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // The group this server leads, which only it and its children are in.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
