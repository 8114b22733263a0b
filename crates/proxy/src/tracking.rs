//! Client-side caching through the proxy (CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO).
//!
//! A shard remembers which keys each of its connections read and sends that connection the
//! invalidations, so a tracking client's commands go over connections of its own: CLIENT
//! TRACKING ON goes to every shard's primary on one (BCAST must hear of every key, and any
//! shard may serve the next read), and a connection the client makes later sends it first.
//! Invalidation pushes then come on the client's connections like messages, and are passed on.
//! CLIENT CACHING is kept at the proxy and sent before the command it applies to, on every
//! connection that command goes to. Losing one of those connections loses what the shard
//! remembered, so the client is disconnected, as a client library expects to drop its cache.
//!
//! Not yet (issue 8): REDIRECT, which names a connection of the shard's; through the proxy the
//! other client is the proxy's, and may be on another thread.

use tessera_protocol::Args;

use crate::commands::{is, write_request};
use crate::merge::{Gather, Merge};
use crate::worker::{To, Tracking, Worker, write_command};

const REDIRECT_REFUSED: &str = "ERR CLIENT TRACKING REDIRECT is not available through the proxy yet: use RESP3 (HELLO 3), where invalidations come on the tracking connection itself";

impl Worker {
    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
    pub(crate) fn client_tracking(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let on = is(args.get(2), "on");
        let off = is(args.get(2), "off");
        let mut valid = on || off;
        let mut t = Tracking {
            command: Vec::new(),
            optin: false,
            optout: false,
            bcast: false,
        };
        let mut i = 3;
        while i < args.len() {
            let a = args.get(i);
            let more = i + 1 < args.len();
            if is(a, "redirect") && more {
                return self.reply_error(key, REDIRECT_REFUSED);
            } else if is(a, "prefix") && more {
                i += 1;
            } else if is(a, "optin") {
                t.optin = true;
            } else if is(a, "optout") {
                t.optout = true;
            } else if is(a, "bcast") {
                t.bcast = true;
            } else if !is(a, "noloop") {
                valid = false;
            }
            i += 1;
        }
        if !valid {
            // A shard's syntax error; nothing changes.
            return self.forward_to_any(key, raw, args);
        }
        if off {
            return self.tracking_off(key, args, raw);
        }
        let addrs = match self.primary_addrs() {
            Ok(addrs) => addrs,
            Err(e) => return self.reply_error(key, e),
        };
        write_request(&mut t.command, raw, args);
        let mut gather = Gather::new(Merge::AllSucceeded, addrs.len());
        // Out of the client while its connections are made: a new one gets this command once.
        gather.tracking_before = Some(self.clients[key].tracking.take());
        let part = self.expect_parts(key, gather);
        let mut failed = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            match self.private_backend(key, addr) {
                Ok(b) => {
                    self.set_tracking(b, true);
                    self.send(b, part(i), 0, |o| o.extend_from_slice(&t.command));
                }
                Err(e) => failed.push((part(i), e)),
            }
        }
        // In force for the commands after it; a refusal puts the mode before it back.
        self.clients[key].tracking = Some(Box::new(t));
        for (to, e) in failed {
            self.deliver(to, format!("-{e}\r\n").as_bytes());
        }
    }

    /// CLIENT TRACKING OFF on every connection where it is on.
    fn tracking_off(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let c = &mut self.clients[key];
        c.tracking = None;
        c.caching = false;
        let tracked = self.tracking_backends(key);
        if tracked.is_empty() {
            return self.reply_with(key, |r| r.ok());
        }
        let part = self.expect_parts(key, Gather::new(Merge::AllSucceeded, tracked.len()));
        for (i, b) in tracked.into_iter().enumerate() {
            self.set_tracking(b, false);
            self.send(b, part(i), 0, |o| write_request(o, raw, args));
        }
    }

    /// RESET: tracking off, without a reply.
    pub(crate) fn stop_tracking(&mut self, key: usize) {
        let c = &mut self.clients[key];
        c.tracking = None;
        c.caching = false;
        for b in self.tracking_backends(key) {
            self.set_tracking(b, false);
            self.send(b, To::Discard, 0, |o| {
                write_command(o, &[b"CLIENT", b"TRACKING", b"OFF"])
            });
        }
    }

    /// `CLIENT TRACKINGINFO`, from a connection where tracking is on. With CLIENT CACHING given
    /// the shard shows it, and a PING after ends it there, as the command it applies to will.
    pub(crate) fn tracking_info(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let Some(&b) = self.tracking_backends(key).first() else {
            return self.forward_to_any(key, raw, args);
        };
        let word = match &self.clients[key].tracking {
            Some(t) if self.clients[key].caching => Some(if t.optin { "yes" } else { "no" }),
            _ => None,
        };
        if let Some(word) = word {
            self.send(b, To::Discard, 0, |o| {
                write_command(o, &[b"CLIENT", b"CACHING", word.as_bytes()])
            });
        }
        self.forward(key, b, raw, args);
        if word.is_some() {
            self.send(b, To::Discard, 0, |o| write_command(o, &[b"PING"]));
        }
    }

    /// `CLIENT CACHING YES|NO`: kept for the next command (or transaction), as Redis checks it.
    pub(crate) fn client_caching(&mut self, key: usize, word: &[u8]) {
        let c = &mut self.clients[key];
        let refusal = match &c.tracking {
            None => Some(
                "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
            ),
            Some(t) if is(word, "yes") => (!t.optin).then_some(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ),
            Some(t) if is(word, "no") => (!t.optout).then_some(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ),
            Some(_) => Some("ERR syntax error"),
        };
        match refusal {
            Some(e) => self.reply_error(key, e),
            None => {
                c.caching = true;
                self.reply_with(key, |r| r.ok());
            }
        }
    }
}
