//! [`FaultProxy`]: a TCP proxy on a loopback port that a test turns into a
//! bad network: delay, throttle, cut, or black hole (stop forwarding, close
//! nothing), in both directions, switched at any moment; or into a broken
//! server that answers every request with the same bytes (an HTTP 500).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward as it comes.
    Pass,
    /// Hold each chunk this long before forwarding it.
    Delay(Duration),
    /// Forward at most this many bytes per second, each way.
    Throttle(u64),
    /// Close every connection, and close new ones at once.
    Cut,
    /// Keep every connection open and forward nothing: to the peers, a
    /// silent network, which only a timeout detects.
    BlackHole,
    /// Close every connection; answer each new one with these bytes once
    /// it has sent a request head (through its blank line), then close it:
    /// a server that fails every request, as with [`HTTP_500`].
    Answer(&'static [u8]),
}

/// An HTTP/1.1 server error, for [`Fault::Answer`].
pub const HTTP_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n\
    content-length: 0\r\nconnection: close\r\n\r\n";

/// Most bytes of a request head read before [`Fault::Answer`] answers
/// anyway.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Bytes read per chunk: small enough that a throttle or a black hole takes
/// effect within a chunk.
const CHUNK: usize = 16 * 1024;

/// A proxy in front of `target`, until dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let addr = listener.local_addr().expect("bound");
        let (fault, watched) = watch::channel(Fault::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = watched.clone();
                tokio::spawn(async move {
                    let now = *fault.borrow();
                    match now {
                        Fault::Cut => return,
                        Fault::Answer(bytes) => {
                            answer(client, bytes).await;
                            return;
                        }
                        _ => {}
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pump(client_read, server_write, fault.clone()) => {}
                        _ = pump(server_read, client_write, fault) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            fault,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the proxy's address: an upstream to give an observer.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` from now on, to open connections and new ones.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.fault.send_replace(Fault::Cut);
    }
}

/// Reads a request head from `client`, answers `bytes` and closes.
async fn answer(mut client: TcpStream, bytes: &[u8]) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        match client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let _ = client.write_all(bytes).await;
    let _ = client.shutdown().await;
    // Closing with a request body unread would reset the connection, and
    // the client might lose the answer: read what it still sends until it
    // closes too.
    let drain = async { while matches!(client.read(&mut buffer).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// Waits while the link is black-holed: the fault to forward under, or
/// `None` once the link is cut (or answered) or the proxy is gone.
async fn open_link(fault: &mut watch::Receiver<Fault>) -> Option<Fault> {
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Cut | Fault::Answer(_) => return None,
            Fault::BlackHole => fault.changed().await.ok()?,
            other => return Some(other),
        }
    }
}

/// Copies `from` to `to` under the current fault, until either side closes
/// or the fault is [`Fault::Cut`].
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        // While black-holed, read nothing: the sender's window fills and
        // it stalls, as behind a dead link that still holds the TCP state.
        let Some(current) = open_link(&mut fault).await else {
            return;
        };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match current {
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Throttle(bytes_per_second) => {
                let seconds = n as f64 / bytes_per_second.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            }
            _ => {}
        }
        // A fault switched on while this chunk was held applies to it: a
        // black hole holds it until it closes.
        if open_link(&mut fault).await.is_none() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the proxy.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    }

    #[tokio::test]
    async fn passes_then_black_holes_then_passes_then_cuts() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"one").await, b"one");

        proxy.set(Fault::BlackHole);
        stream.write_all(b"two").await.unwrap();
        let mut byte = [0u8; 1];
        let silent = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
        assert!(silent.is_err(), "a black hole forwards nothing");

        // Healed: what was held goes through, in order.
        proxy.set(Fault::Pass);
        let mut back = [0u8; 3];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"two");

        proxy.set(Fault::Cut);
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).await;
        assert!(
            closed.is_err() || rest.is_empty(),
            "a cut closes the connection"
        );
        // And new connections are closed at once.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        let n = late.read(&mut byte).await.unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn a_delay_holds_each_chunk() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(100)));
        let started = tokio::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"late").await, b"late");
        // Held once each way: a lower bound, whatever the machine's load.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn an_answer_closes_open_links_and_answers_each_new_request() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"one").await, b"one");
        proxy.set(Fault::Answer(HTTP_500));
        let mut rest = Vec::new();
        let closed = open.read_to_end(&mut rest).await;
        assert!(closed.is_err() || rest.is_empty(), "open links close");

        let mut request = TcpStream::connect(proxy.addr()).await.unwrap();
        // The head in two pieces: the answer waits for its blank line.
        request
            .write_all(b"PUT /chain/x HTTP/1.1\r\nhost: a\r\n")
            .await
            .unwrap();
        request.write_all(b"\r\nbody").await.unwrap();
        let mut answer = Vec::new();
        request.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, HTTP_500);
    }
}
