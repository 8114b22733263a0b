//! CLIENT LIST, CLIENT INFO and CLIENT KILL across the proxy's worker threads.
//!
//! Each worker owns its clients, so the one asked sends the request to every worker's mailbox
//! (its own included) and wakes them; each answers with its part (its clients' lines, or how
//! many it closed), and the parts are merged into the reply like a command sent to every
//! shard. Nothing is shared on the request path: a client's line is made by its own worker.

use std::sync::Arc;

use tessera_protocol::Args;
use tessera_protocol::clients::{ClientType, KillFilter, Line, ListFilter};

use crate::merge::{Gather, Merge};
use crate::worker::{Client, To, Worker};

/// What one worker asks of every worker.
pub(crate) enum Ask {
    /// The lines of the clients the filter matches, as a bulk string.
    List(ListFilter),
    /// Close the clients the filter matches (`asker`: the id of the client asking); the
    /// count is answered.
    Kill { filter: KillFilter, asker: u64 },
}

/// A request or an answer between workers.
pub(crate) enum Mail {
    /// `ask`, answered to `to` on worker `from`.
    Ask { ask: Arc<Ask>, from: usize, to: To },
    /// An answer for one of this worker's clients.
    Answer { to: To, frame: Vec<u8> },
    /// The control group's answer to a client's ACL SETUSER or DELUSER (`acl.rs`).
    AclAnswer { to: To, frame: Vec<u8> },
    /// An invalidation for client `target` (this worker's `key`): `value` is the keys (or
    /// the null of `tracker`'s protocol), from the client tracking on worker `tracker.0`.
    Invalidate {
        target: u64,
        key: usize,
        value: Vec<u8>,
        tracker: Tracker,
    },
    /// The target of this worker's tracking client has gone.
    RedirectBroken(Tracker),
}

/// A tracking client: its worker, its key there and its id.
#[derive(Clone, Copy)]
pub(crate) struct Tracker {
    pub worker: usize,
    pub key: usize,
    pub id: u64,
}

fn client_type(c: &Client) -> ClientType {
    if c.subscribed() {
        ClientType::Pubsub
    } else {
        ClientType::Normal
    }
}

impl Worker {
    /// Client `key`'s CLIENT LIST line, without the newline.
    pub(crate) fn client_line(&self, key: usize) -> String {
        let c = &self.clients[key];
        // In Redis's order (`catClientInfoString`).
        let mut flags = String::new();
        if c.monitoring {
            flags.push('O');
        }
        if c.subscribed() {
            flags.push('P');
        }
        if c.multi.is_some() {
            flags.push('x');
        }
        if let Some(t) = &c.tracking {
            flags.push('t');
            if t.redirect.as_ref().is_some_and(|r| r.broken) {
                flags.push('R');
            }
            if t.bcast {
                flags.push('B');
            }
        }
        if c.closing {
            flags.push('c');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let (sub, psub, ssub) = c.subs.as_ref().map_or((0, 0, 0), |s| s.counts());
        let (qbuf, rbs) = c.input_use();
        Line {
            id: c.id,
            addr: &c.peer,
            laddr: &c.local,
            fd: c.fd(),
            name: c.name.as_deref().unwrap_or_default(),
            age: self.now.duration_since(c.created).as_secs(),
            idle: self.now.duration_since(c.active).as_secs(),
            flags: &flags,
            sub,
            psub,
            ssub,
            multi: c.multi.as_ref().map_or(-1, |m| m.lens.len() as i64),
            qbuf,
            qbuf_free: rbs.saturating_sub(qbuf),
            rbs,
            obl: 0,
            oll: c.queue.len(),
            omem: c.out_capacity(),
            cmd: c.cmd,
            user: self.user_name(key),
            redir: c
                .tracking
                .as_ref()
                .map_or(-1, |t| t.redirect.as_ref().map_or(0, |r| r.target as i64)),
            resp: if c.resp3 { 3 } else { 2 },
            lib_name: c.lib_name.as_deref().unwrap_or_default(),
            lib_ver: c.lib_ver.as_deref().unwrap_or_default(),
        }
        .to_string()
    }

    /// CLIENT INFO: the caller's own line.
    pub(crate) fn client_info(&mut self, key: usize) {
        let line = self.client_line(key) + "\n";
        self.reply_with(key, |r| r.verbatim("txt", line.as_bytes()));
    }

    /// CLIENT LIST and CLIENT KILL: asked of every worker, the parts merged.
    pub(crate) fn client_all(&mut self, key: usize, kill: bool, args: &Args<'_>) {
        let parsed = if kill {
            KillFilter::parse(args).and_then(|filter| match &filter.user {
                Some(u) if self.acl.as_ref().is_none_or(|a| a.id_of(u).is_none()) => {
                    Err(format!("ERR No such user '{}'", String::from_utf8_lossy(u)))
                }
                _ => Ok(Ask::Kill {
                    filter,
                    asker: self.clients[key].id,
                }),
            })
        } else {
            ListFilter::parse(args).map(Ask::List)
        };
        let ask = match parsed {
            Ok(a) => Arc::new(a),
            Err(e) => return self.reply_error(key, &e),
        };
        let merge = match &*ask {
            Ask::List(_) => Merge::Text {
                resp3: self.clients[key].resp3,
            },
            Ask::Kill { filter, .. } if filter.old => Merge::KillOne,
            Ask::Kill { .. } => Merge::Sum,
        };
        let workers = self.shared.workers();
        let part = self.expect_parts(key, Gather::new(merge, workers));
        for w in 0..workers {
            let mail = Mail::Ask {
                ask: Arc::clone(&ask),
                from: self.index,
                to: part(w),
            };
            self.shared.post(w, mail);
        }
    }

    /// Handles the mail other workers (or this one) sent.
    pub(crate) fn read_mail(&mut self) {
        for mail in self.shared.take_mail(self.index) {
            match mail {
                Mail::Answer { to, frame } => self.deliver(to, &frame),
                Mail::AclAnswer { to, frame } => self.acl_answer(to, &frame),
                Mail::Invalidate {
                    target,
                    key,
                    value,
                    tracker,
                } => self.invalidate_target(target, key, &value, tracker),
                Mail::RedirectBroken(tracker) => self.redirect_broken(tracker),
                Mail::Ask { ask, from, to } => {
                    let frame = match &*ask {
                        Ask::List(filter) => self.list_clients(filter),
                        Ask::Kill { filter, asker } => self.kill_clients(filter, *asker),
                    };
                    self.shared.post(from, Mail::Answer { to, frame });
                }
            }
        }
    }

    /// This worker's part of CLIENT LIST: a bulk string of lines.
    fn list_clients(&self, filter: &ListFilter) -> Vec<u8> {
        let mut text = String::new();
        for (k, c) in self.clients.iter() {
            if filter.matches(c.id, client_type(c)) {
                text.push_str(&self.client_line(k));
                text.push('\n');
            }
        }
        let mut frame = Vec::with_capacity(text.len() + 16);
        crate::worker::write_bulk(&mut frame, text.as_bytes());
        frame
    }

    /// This worker's part of CLIENT KILL: closes the clients `filter` matches (the asker once
    /// it has its reply) and answers how many.
    fn kill_clients(&mut self, filter: &KillFilter, asker: u64) -> Vec<u8> {
        let targets: Vec<(usize, bool)> = self
            .clients
            .iter()
            .filter_map(|(k, c)| {
                let line = Line {
                    id: c.id,
                    addr: &c.peer,
                    laddr: &c.local,
                    user: self.user_name(k),
                    ..Line::default()
                };
                let me = c.id == asker;
                filter.matches(&line, client_type(c), me).then_some((k, me))
            })
            .collect();
        for &(k, me) in &targets {
            if me {
                self.clients[k].closing = true;
            } else {
                self.close_client(k);
            }
        }
        format!(":{}\r\n", targets.len()).into_bytes()
    }
}
