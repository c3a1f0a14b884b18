//! [`S3Server`]: a real S3-protocol server process (moto's, from PyPI) on a
//! loopback port, started by a test and stopped by PID when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer after it is started: Python and
/// moto's imports take a few seconds on a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);

/// A running S3 server; killed (by PID) when dropped.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
}

impl S3Server {
    /// A free loopback port, for a server started later.
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port()
    }

    /// Starts `moto_server` on a free port and waits until it answers.
    /// Panics, saying how to install it, if it is absent.
    pub fn start() -> Self {
        Self::start_on(Self::free_port())
    }

    /// Starts `moto_server` on `port`.
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start moto_server ({err}): pip install 'moto[server]'")
            });
        let server = S3Server {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            stream,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
    }

    /// Sets the standard AWS variables for this server: for a test binary
    /// that talks to one server only (the variables are the process's).
    pub fn export_aws_env(&self) {
        Self::export_aws_env_for(self.port);
    }

    /// [`S3Server::export_aws_env`] for a server on `port`, started or not.
    pub fn export_aws_env_for(port: u16) {
        let endpoint = format!("http://127.0.0.1:{port}");
        for (key, value) in [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ] {
            std::env::set_var(key, value);
        }
    }

    /// Stops the server now (a test's outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
