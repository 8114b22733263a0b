//! The replica's side of Redis's replication handshake, as a state machine without I/O: it is
//! given each reply line of the primary and answers with the bytes to send next or the outcome
//! (the sync thread in `replica.rs` does the reading and writing).
//!
//! PING, AUTH (with `masterauth`), `REPLCONF listening-port`, `REPLCONF capa eof capa psync2`,
//! then `PSYNC <replid> <offset>`, answered by `+FULLRESYNC <replid> <offset>` or `+CONTINUE
//! [<replid>]`. Errors to PING other than authentication ones, to AUTH and to PSYNC end the
//! attempt; REPLCONF errors are ignored, as Redis ignores them (old primaries).

/// What the caller does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and read the next reply line.
    Send(Vec<u8>),
    /// The primary starts a full sync: the RDB payload follows.
    FullSync { replid: String, offset: u64 },
    /// The primary continues from the offset asked for; it may have a new replication ID.
    Continue { replid: Option<String> },
    /// The attempt failed; retry later.
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ping,
    Auth,
    Port,
    Capa,
    Psync,
    Done,
}

/// One handshake attempt.
#[derive(Debug)]
pub struct Handshake {
    state: State,
    /// `masterauth` (and `masteruser`).
    auth: Option<(Option<String>, String)>,
    port: u16,
    /// The replication ID and next offset the replica asks to continue from.
    replid: String,
    offset: u64,
}

/// Encodes a command as a RESP array.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    tessera_protocol::Reply::new(&mut out, false).command(args.len(), args.iter().copied());
    out
}

impl Handshake {
    /// A handshake for a replica listening on `port` that has the stream of `replid` up to
    /// position `offset` (it asks for `offset + 1`, Redis's 1-based next byte).
    pub fn new(
        auth: Option<(Option<String>, String)>,
        port: u16,
        replid: String,
        offset: u64,
    ) -> Handshake {
        Handshake {
            state: State::Ping,
            auth,
            port,
            replid,
            offset,
        }
    }

    /// The first bytes to send.
    pub fn start(&mut self) -> Vec<u8> {
        self.state = State::Ping;
        command(&[b"PING"])
    }

    /// Takes one reply line (without its CRLF) and says what to do next.
    pub fn on_reply(&mut self, line: &str) -> Step {
        let error = line.starts_with('-');
        match self.state {
            State::Ping => {
                // Before AUTH a protected primary answers PING with NOAUTH: that is expected.
                let auth_error = ["-NOAUTH", "-NOPERM", "-ERR operation not permitted"]
                    .iter()
                    .any(|p| line.starts_with(p));
                if error && !auth_error {
                    return self.fail(format!("Error reply to PING from master: '{line}'"));
                }
                match &self.auth {
                    Some((user, pass)) => {
                        self.state = State::Auth;
                        let mut args: Vec<&[u8]> = vec![b"AUTH"];
                        if let Some(u) = user {
                            args.push(u.as_bytes());
                        }
                        args.push(pass.as_bytes());
                        Step::Send(command(&args))
                    }
                    None => self.send_port(),
                }
            }
            State::Auth => {
                if error {
                    return self.fail(format!("Unable to AUTH to MASTER: {line}"));
                }
                self.send_port()
            }
            State::Port => {
                self.state = State::Capa;
                Step::Send(command(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]))
            }
            State::Capa => {
                self.state = State::Psync;
                let offset = (self.offset + 1).to_string();
                Step::Send(command(&[
                    b"PSYNC",
                    self.replid.as_bytes(),
                    offset.as_bytes(),
                ]))
            }
            State::Psync => self.on_psync_reply(line),
            State::Done => self.fail("reply after the handshake ended".into()),
        }
    }

    fn send_port(&mut self) -> Step {
        self.state = State::Port;
        let port = self.port.to_string();
        Step::Send(command(&[b"REPLCONF", b"listening-port", port.as_bytes()]))
    }

    fn on_psync_reply(&mut self, line: &str) -> Step {
        if let Some(rest) = line.strip_prefix("+FULLRESYNC") {
            let mut words = rest.split_whitespace();
            let parsed = match (words.next(), words.next(), words.next()) {
                (Some(id), Some(off), None) if id.len() == 40 => {
                    off.parse::<u64>().ok().map(|o| (id.to_string(), o))
                }
                _ => None,
            };
            return match parsed {
                Some((replid, offset)) => {
                    self.state = State::Done;
                    Step::FullSync { replid, offset }
                }
                None => self.fail(format!(
                    "Master replied with wrong +FULLRESYNC syntax: {line}"
                )),
            };
        }
        if let Some(rest) = line.strip_prefix("+CONTINUE") {
            let id = rest.trim();
            if !id.is_empty() && id.len() != 40 {
                return self.fail(format!(
                    "Master replied with wrong +CONTINUE syntax: {line}"
                ));
            }
            self.state = State::Done;
            return Step::Continue {
                replid: (!id.is_empty()).then(|| id.to_string()),
            };
        }
        self.fail(format!("Unexpected reply to PSYNC from master: {line}"))
    }

    fn fail(&mut self, why: String) -> Step {
        self.state = State::Done;
        Step::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789012345678901234567890123456789";

    fn sent(step: Step) -> String {
        match step {
            Step::Send(b) => String::from_utf8(b).unwrap(),
            other => panic!("expected bytes to send, got {other:?}"),
        }
    }

    #[test]
    fn full_sync_without_auth() {
        let mut h = Handshake::new(None, 6380, ID.into(), 99);
        assert_eq!(h.start(), b"*1\r\n$4\r\nPING\r\n");
        let s = sent(h.on_reply("+PONG"));
        assert_eq!(
            s,
            "*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n"
        );
        assert!(sent(h.on_reply("+OK")).contains("psync2"));
        // An old primary that does not know the capability: ignored.
        let s = sent(h.on_reply("-ERR Unrecognized REPLCONF option: capa"));
        assert_eq!(
            s,
            format!("*3\r\n$5\r\nPSYNC\r\n$40\r\n{ID}\r\n$3\r\n100\r\n")
        );
        assert_eq!(
            h.on_reply(&format!("+FULLRESYNC {ID} 1234")),
            Step::FullSync {
                replid: ID.into(),
                offset: 1234
            }
        );
    }

    #[test]
    fn auth_and_continue() {
        let mut h = Handshake::new(Some((Some("repl".into()), "pw".into())), 1, ID.into(), 0);
        h.start();
        let s = sent(h.on_reply("-NOAUTH Authentication required."));
        assert_eq!(s, "*3\r\n$4\r\nAUTH\r\n$4\r\nrepl\r\n$2\r\npw\r\n");
        sent(h.on_reply("+OK"));
        sent(h.on_reply("+OK"));
        sent(h.on_reply("+OK"));
        assert_eq!(h.on_reply("+CONTINUE"), Step::Continue { replid: None });
        let mut h = Handshake::new(None, 1, ID.into(), 0);
        h.start();
        for r in ["+PONG", "+OK", "+OK"] {
            sent(h.on_reply(r));
        }
        let other = "f".repeat(40);
        assert_eq!(
            h.on_reply(&format!("+CONTINUE {other}")),
            Step::Continue {
                replid: Some(other)
            }
        );
    }

    #[test]
    fn failures() {
        let mut h = Handshake::new(None, 1, ID.into(), 0);
        h.start();
        assert!(matches!(h.on_reply("-LOADING busy"), Step::Failed(_)));
        let mut h = Handshake::new(Some((None, "bad".into())), 1, ID.into(), 0);
        h.start();
        sent(h.on_reply("+PONG"));
        assert!(matches!(
            h.on_reply("-WRONGPASS invalid username-password pair"),
            Step::Failed(_)
        ));
        for reply in [
            "-NOMASTERLINK Can't SYNC while not connected with my master",
            "+FULLRESYNC short 1",
            "+FULLRESYNC 0123456789012345678901234567890123456789 x",
            "+CONTINUE abc",
            "$5",
        ] {
            let mut h = Handshake::new(None, 1, ID.into(), 0);
            h.start();
            for r in ["+PONG", "+OK", "+OK"] {
                sent(h.on_reply(r));
            }
            assert!(matches!(h.on_reply(reply), Step::Failed(_)), "{reply}");
            assert!(matches!(h.on_reply("+OK"), Step::Failed(_)));
        }
    }
}
