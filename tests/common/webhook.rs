//! The webhook receiver as a sender sees it, over raw HTTP/1.1: exact bytes on the wire (a header name's
//! case, header bytes that are not text, a body that trickles in), from a chosen loopback address, and the
//! answer as it comes back, or the connection closing instead.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::{TestGateway, TestSandbox};

pub const PATH: &str = "/webhooks/connectpay";
pub const TOKEN_HEADER: &str = "x-connectpay-webhook-token";

/// One answer of the receiver.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// Whether the receiver said it closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"))
    }
}

/// A connection to the receiver, opened from `from` (any 127.0.0.0/8 address) when given.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read past the last answer.
    buffered: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, from: Option<IpAddr>) -> Connection {
        let socket = TcpSocket::new_v4().expect("a socket");
        if let Some(from) = from {
            socket
                .bind(SocketAddr::new(from, 0))
                .expect("binds to a loopback address");
        }
        let stream = socket.connect(addr).await.expect("the receiver accepts");
        Connection {
            stream,
            buffered: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads more bytes; `false` when the receiver closed the connection (or reset it).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffered.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next answer, or `None` when the connection closed without one. Panics after `within`.
    pub async fn answer(&mut self, within: Duration) -> Option<Answer> {
        tokio::time::timeout(within, self.read_answer())
            .await
            .expect("an answer, or the connection closed, in time")
    }

    async fn read_answer(&mut self) -> Option<Answer> {
        let end = loop {
            if let Some(at) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buffered[..end]).into_owned();
        self.buffered.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().expect("a length"));
        let body = match length {
            Some(length) => {
                while self.buffered.len() < length {
                    if !self.fill().await {
                        break;
                    }
                }
                let taken = length.min(self.buffered.len());
                self.buffered.drain(..taken).collect::<Vec<u8>>()
            }
            // No length: the body runs to the end of the connection.
            None => {
                while self.fill().await {}
                std::mem::take(&mut self.buffered)
            }
        };
        Some(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Sends `bytes` one at a time, `every` apart, keeping whatever the receiver answers meanwhile, and
    /// returns once the receiver has closed the connection (while sending, or after the last byte).
    pub async fn trickle(&mut self, bytes: &[u8], every: Duration) {
        let (mut reader, mut writer) = self.stream.split();
        let mut rest = bytes.iter();
        let mut tick = tokio::time::interval(every);
        let mut chunk = [0u8; 8192];
        loop {
            tokio::select! {
                read = reader.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                },
                _ = tick.tick() => {
                    if let Some(byte) = rest.next()
                        && writer.write_all(&[*byte]).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Whether the receiver closes the connection within `within` (whatever it sends before).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}

/// A POST to the receiver's path: `headers` as given (names and values as raw bytes), then `body`.
pub fn request(headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "POST {PATH} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    bytes
}

/// One POST on a fresh connection from `from`; `None` when the receiver closed it without an answer.
pub async fn post_from(
    gateway: &TestGateway,
    from: Option<IpAddr>,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
) -> Option<Answer> {
    let mut connection = Connection::open(gateway.gateway().webhook_addr, from).await;
    // The receiver may answer (and close) before it has read everything: a failed write is no answer yet.
    let _ = connection.send(&request(headers, body)).await;
    connection.answer(Duration::from_secs(10)).await
}

/// One POST from 127.0.0.1 on a fresh connection; panics when no answer comes.
pub async fn post(gateway: &TestGateway, headers: &[(&[u8], &[u8])], body: &[u8]) -> Answer {
    post_from(gateway, None, headers, body)
        .await
        .expect("an answer")
}

/// One POST carrying `token` in the token header.
pub async fn post_with_token(gateway: &TestGateway, token: &[u8], body: &[u8]) -> Answer {
    post(gateway, &[(TOKEN_HEADER.as_bytes(), token)], body).await
}

/// A notification about an application this gateway never created (a fresh UUID): once accepted, it
/// stays in the inbox for the 30 s grace period, so the inbox shows whether it was recorded.
pub fn about_unknown_application() -> Vec<u8> {
    json!({"application": {
        "applicationId": uuid::Uuid::new_v4().to_string(),
        "status": "ACCOUNT_ISSUED",
        "baasClientId": "forged",
    }})
    .to_string()
    .into_bytes()
}

/// How many notifications the gateway has recorded and not yet finished with.
pub async fn inbox(gateway: &TestGateway) -> u64 {
    gateway
        .gateway()
        .service()
        .inbox_backlog()
        .await
        .expect("the inbox can be read")
        .0
}

/// Every request the sandbox received other than the OAuth token calls: the reads and submits a
/// notification could have caused.
pub async fn onboarding_calls(sandbox: &TestSandbox) -> Vec<Value> {
    sandbox
        .requests("")
        .await
        .into_iter()
        .filter(|r| r["endpoint"] != "token")
        .collect()
}
