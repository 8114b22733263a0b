//! A cluster database's users changed through the control API, for `ACL SETUSER` and
//! `ACL DELUSER` at the proxy and at a shard (`docs/CLUSTER.md`, "Users"): the request, and
//! the client's RESP reply made from the answer. Passwords come already hashed.

use serde_json::{Value, json};

/// One change to make.
pub struct Change {
    method: &'static str,
    path: String,
    body: Value,
    deletes: bool,
}

/// The answer for the client, and the configuration epoch the change made (its reply should
/// wait until the process holds that epoch, so the client's next command sees the change).
pub struct Answer {
    pub frame: Vec<u8>,
    pub epoch: Option<u64>,
}

/// `ACL SETUSER name rules...`, the passwords in `rules` hashed.
pub fn set_user(database: &str, name: &[u8], rules: Vec<Vec<u8>>) -> Result<Change, &'static str> {
    let rules: Result<Vec<String>, _> = rules.into_iter().map(String::from_utf8).collect();
    let (Ok(rules), Ok(name)) = (rules, std::str::from_utf8(name)) else {
        return Err(
            "ERR the user names and ACL rules of a cluster database must be UTF-8 text (they are kept in the cluster configuration)",
        );
    };
    Ok(Change {
        method: "PUT",
        path: format!(
            "/v1/databases/{}/users/{}",
            encode_segment(database),
            encode_segment(name)
        ),
        body: json!({ "rules": rules }),
        deletes: false,
    })
}

/// `ACL DELUSER names...`. A name that is not text names no user the configuration can hold.
pub fn delete_users(database: &str, names: &[&[u8]]) -> Change {
    let names: Vec<&str> = names
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok())
        .collect();
    Change {
        method: "DELETE",
        path: format!("/v1/databases/{}/users", encode_segment(database)),
        body: json!({ "users": names }),
        deletes: true,
    }
}

impl Change {
    /// Makes the change (blocking: from a thread of its own) at the control `members`.
    pub fn run(&self, members: &[String], token: Option<&str>) -> Answer {
        match crate::call(members, token, self.method, &self.path, &self.body) {
            Ok(v) => Answer {
                frame: if self.deletes {
                    format!(":{}\r\n", v["deleted"].as_u64().unwrap_or(0)).into_bytes()
                } else {
                    b"+OK\r\n".to_vec()
                },
                epoch: v["epoch"].as_u64(),
            },
            Err(e) => Answer {
                frame: error_frame(&e),
                epoch: None,
            },
        }
    }
}

/// An error reply of `text` (Redis's own code kept, `ERR` added otherwise), on one line
/// whatever it holds: a refused rule is quoted in the control group's message.
pub fn error_frame(text: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut r = tessera_protocol::Reply::new(&mut frame, false);
    if text.starts_with("ERR ") {
        r.error(text);
    } else {
        r.error(&format!("ERR {text}"));
    }
    frame
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_percent_encoded_and_need_text() {
        assert_eq!(encode_segment("app"), "app");
        assert_eq!(encode_segment("a/b c%é"), "a%2Fb%20c%25%C3%A9");
        let c = set_user("my db", b"a/b", vec![b"on".to_vec()]).unwrap();
        assert_eq!(c.path, "/v1/databases/my%20db/users/a%2Fb");
        assert_eq!(c.body, json!({"rules": ["on"]}));
        assert!(set_user("db", b"\xff", vec![]).is_err());
        let d = delete_users("db", &[b"x", b"\xff"]);
        assert_eq!(d.body, json!({"users": ["x"]}));
        assert_eq!(error_frame("no\r\nway"), b"-ERR no  way\r\n");
    }
}
