//! A raw HTTP/1.1 client: exact request bytes (targets and headers no HTTP library would
//! send) over a fresh connection, and the answer as read off the socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response read off the socket; `status` is `None` when the server closed or reset the
/// connection without answering.
#[derive(Debug)]
pub struct Raw {
    pub status: Option<u16>,
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `method target HTTP/1.1` with `headers` (raw bytes), `Host` and `Connection: close`.
pub fn request(method: &[u8], target: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method);
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.extend_from_slice(k);
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Sends `bytes` while reading the answer (a server refusing a huge head answers before it has
/// read all of it), until the server closes the connection.
pub async fn send_raw(addr: SocketAddr, bytes: Vec<u8>) -> Raw {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // The write half is kept open until the answer is read: closing it early would tell the
    // server the request was abandoned.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s");
    drop(writer.await);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok());
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}
