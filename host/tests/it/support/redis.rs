//! A real redis-server on a loopback port.

use super::*;

/// A real `redis-server` on a free loopback port, stopped when dropped.
/// `None` (test skipped) when it is not installed, except in CI (`.ci/run`
/// installs it).
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
    /// TLS only: the directory with `ca.crt`, `server.crt`, `server.key`.
    tls: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(None).await
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 from
    /// a CA of its own (`ca_file()`).
    pub async fn start_tls() -> Option<RedisServer> {
        if !installed("openssl", "version", "openssl") {
            return None;
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("llmproxy-redis-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=llmproxy test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        Self::start_with(Some(dir)).await
    }

    async fn start_with(tls: Option<std::path::PathBuf>) -> Option<RedisServer> {
        if !installed("redis-server", "--version", "redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            tls,
        };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls.as_ref().expect("a TLS server").join("ca.crt")
    }

    /// Starts the server (again, empty: it keeps nothing on disk) and waits
    /// until it answers PING.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut cmd = std::process::Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(dir) => cmd
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.crt")),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if self.cli(&["PING"]) == "PONG" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    /// What `redis-cli` prints for a command.
    fn cli(&self, command: &[&str]) -> String {
        let mut cmd = std::process::Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(dir) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(dir.join("ca.crt"));
        }
        let out = cmd.args(command).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// How many keys the server holds.
    pub fn keys(&self) -> usize {
        self.cli(&["DBSIZE"]).parse().unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
