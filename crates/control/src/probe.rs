//! One request to a shard or proxy over RESP (AUTH first when there is a password), for
//! supervision and status: INFO replication for offsets and lag, readiness checks. Replies are
//! framed by the protocol crate; anything unexpected, slow or closed is `None`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The reply to `args` from `addr` within `within`, after `AUTH auth...` unless `auth` is
/// empty: the AUTH reply when AUTH fails, else the command's.
pub async fn request(
    addr: &str,
    auth: &[&str],
    args: &[&str],
    within: Duration,
) -> Option<Vec<u8>> {
    tokio::time::timeout(within, exchange(addr, auth, args))
        .await
        .ok()
        .flatten()
}

async fn exchange(addr: &str, auth: &[&str], args: &[&str]) -> Option<Vec<u8>> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut req = Vec::new();
    if !auth.is_empty() {
        let mut line = vec!["AUTH"];
        line.extend_from_slice(auth);
        encode(&mut req, &line);
    }
    encode(&mut req, args);
    conn.write_all(&req).await.ok()?;
    // Our own processes answer in a few kilobytes; anything past this is not an answer.
    const MAX_REPLY: usize = 1 << 20;
    let mut replies = usize::from(!auth.is_empty()) + 1;
    let mut buf = Vec::with_capacity(4096);
    loop {
        while let Some(n) = tessera_protocol::frame::frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..n).collect();
            replies -= 1;
            if replies == 0 || tessera_protocol::frame::is_error(&frame) {
                return Some(frame);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REPLY {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The text of a bulk or simple string reply.
pub fn text(frame: &[u8]) -> Option<String> {
    tessera_protocol::frame::string(frame).map(|s| String::from_utf8_lossy(s).into_owned())
}

/// `field:value` of an INFO reply's text.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\n";
        assert_eq!(info_field(info, "slave_repl_offset"), Some("42"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_repl_offset"), None);
        assert_eq!(info_field(info, "role"), Some("slave"));
    }
}
