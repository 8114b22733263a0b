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
//!
//! REDIRECT names a client of the proxy's, maybe on another thread, while a shard can only
//! redirect to a connection of its own. So the tracking client gets a RESP3 connection of its
//! own to every shard (a feed) and, once the shards have said their ids for them (its later
//! commands wait until then), each shard's TRACKING ON redirects to the client's feed there.
//! What comes on a feed is passed to the target, by mail when it is on another thread: a push
//! to a RESP3 target, an `__redis__:invalidate` message to a subscribed RESP2 one, as Redis's
//! `sendTrackingMessage`. A target that has gone makes the redirect broken, as in Redis.

use tessera_protocol::clients::{TrackingInfo, TrackingOptions};
use tessera_protocol::{Args, frame};

use crate::clients::{Mail, Tracker};
use crate::commands::{is, write_request};
use crate::merge::{Gather, Merge};
use crate::worker::{Feed, Pending, Redirect, Setup, To, Tracking, Worker, write_command};

const REDIRECT_CHANGE: &str =
    "ERR CLIENT TRACKING through the proxy: turn tracking OFF before changing REDIRECT";

impl Worker {
    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
    pub(crate) fn client_tracking(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let on = is(args.get(2), "on");
        let off = is(args.get(2), "off");
        let shared = &self.shared;
        let opts = match TrackingOptions::parse(args, |id| shared.locate(id).is_some()) {
            Ok(opts) => opts,
            Err(e) => return self.reply_error(key, e),
        };
        if !on && !off {
            return self.reply_error(key, "ERR syntax error");
        }
        let TrackingOptions {
            redirect,
            bcast,
            optin,
            optout,
            noloop,
            mut prefixes,
        } = opts;
        let mut t = Tracking {
            command: Vec::new(),
            optin,
            optout,
            bcast,
            noloop,
            redirect: None,
        };
        if off {
            return self.tracking_off(key, args, raw);
        }
        let now = self.clients[key].tracking.as_ref();
        // Still redirecting to the same client: the feeds stay.
        let same = now
            .and_then(|n| n.redirect.as_ref())
            .filter(|r| redirect.is_some_and(|(target, _)| target == r.target));
        if same.is_none()
            && (now.is_some_and(|n| n.redirect.is_some()) || (now.is_some() && redirect.is_some()))
        {
            return self.reply_error(key, REDIRECT_CHANGE);
        }
        let addrs = match self.primary_addrs() {
            Ok(addrs) => addrs,
            Err(e) => return self.reply_error(key, e),
        };
        if let Some((target, at)) = redirect {
            let feeds = same.map(|r| r.feeds.clone());
            if let Some(r) = same {
                prefixes.extend(r.prefixes.iter().cloned());
            }
            prefixes.sort();
            prefixes.dedup();
            t.redirect = Some(Box::new(Redirect {
                target,
                args: args.iter().map(<[u8]>::to_vec).collect(),
                at,
                feeds: feeds.clone().unwrap_or_default(),
                prefixes,
                broken: false,
            }));
            if feeds.is_none() {
                return self.start_feeds(key, t, addrs);
            }
        } else {
            write_request(&mut t.command, raw, args);
        }
        let mut gather = Gather::new(Merge::AllSucceeded, addrs.len());
        // Out of the client while its connections are made: a new one gets this command once.
        gather.tracking_before = Some(self.clients[key].tracking.take());
        let part = self.expect_parts(key, gather);
        let mut failed = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let command = t.command_for(addr).ok_or_else(|| {
                format!("ERR proxy: no invalidation feed at {addr} (turn tracking OFF and ON)")
            });
            match command.and_then(|command| Ok((self.private_backend(key, addr)?, command))) {
                Ok((b, command)) => {
                    self.set_tracking(b, true);
                    self.send(b, part(i), 0, |o| o.extend_from_slice(&command));
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

    /// REDIRECT: a feed connection to every shard, asked for the shard's id for it; the
    /// client's reply (a part per shard) and its later commands wait for the ids.
    fn start_feeds(&mut self, key: usize, t: Tracking, addrs: Vec<String>) {
        // Feeds of an earlier REDIRECT that did not come into force.
        for b in self.feed_backends(key, Feed::Invalidations) {
            self.drop_private(key, b);
        }
        let mut gather = Gather::new(Merge::AllSucceeded, addrs.len());
        gather.tracking_before = Some(None);
        let (id, seq) = self.expect(key, Pending::Gather(Box::new(gather)));
        let mut shards = Vec::with_capacity(addrs.len());
        let mut failed = None;
        for (i, addr) in addrs.into_iter().enumerate() {
            match self.feed_backend(key, &addr, Feed::Invalidations) {
                Ok(b) => {
                    let to = To::Feed {
                        key,
                        id,
                        shard: i as u32,
                    };
                    self.send(b, to, 0, |o| write_command(o, &[b"CLIENT", b"ID"]));
                    shards.push((addr, b, None));
                }
                Err(e) => {
                    failed = Some(format!("-{e}\r\n").into_bytes());
                    break;
                }
            }
        }
        let setup = Setup {
            tracking: t,
            waiting: shards.len(),
            shards,
            seq,
            failed,
        };
        if setup.waiting == 0 {
            return self.finish_feeds(key, setup);
        }
        self.clients[key].setup = Some(Box::new(setup));
    }

    /// A shard's answer to CLIENT ID on client `key`'s feed to shard `shard`.
    pub(crate) fn feed_id(&mut self, key: usize, id: u64, shard: usize, reply: &[u8]) {
        let Some(c) = self.clients.get_mut(key).filter(|c| c.id == id) else {
            return;
        };
        let Some(setup) = c.setup.as_mut() else {
            return;
        };
        match frame::integer(reply) {
            Some(n) if n > 0 => setup.shards[shard].2 = Some(n as u64),
            _ if frame::is_error(reply) => setup.failed = Some(reply.to_vec()),
            _ => setup.failed = Some(b"-ERR proxy: a shard sent an unexpected reply\r\n".to_vec()),
        }
        setup.waiting -= 1;
        if setup.waiting > 0 {
            return;
        }
        if let Some(setup) = c.setup.take() {
            self.finish_feeds(key, *setup);
        }
    }

    /// Every feed has its id (or one failed): TRACKING ON, redirected to the client's feed,
    /// on a connection of the client's to every shard; then the client's commands go on.
    fn finish_feeds(&mut self, key: usize, setup: Setup) {
        let Setup {
            mut tracking,
            shards,
            seq,
            failed,
            ..
        } = setup;
        self.resume_client(key);
        let id = self.clients[key].id;
        let to = |part: usize| To::Client {
            key,
            id,
            seq,
            part: part as u32,
        };
        if let Some(error) = failed {
            for (_, b, _) in &shards {
                self.drop_private(key, *b);
            }
            for part in 0..shards.len() {
                self.deliver(to(part), &error);
            }
            return;
        }
        if let Some(r) = &mut tracking.redirect {
            r.feeds = shards
                .iter()
                .map(|(addr, _, sid)| (addr.clone(), sid.unwrap_or_default()))
                .collect();
        }
        let mut errors = Vec::new();
        for (part, (addr, _, _)) in shards.iter().enumerate() {
            let command = tracking.command_for(addr).unwrap_or_default();
            match self.private_backend(key, addr) {
                Ok(b) => {
                    self.set_tracking(b, true);
                    self.send(b, to(part), 0, |o| o.extend_from_slice(&command));
                }
                Err(e) => errors.push((to(part), e)),
            }
        }
        self.clients[key].tracking = Some(Box::new(tracking));
        for (to, e) in errors {
            self.deliver(to, format!("-{e}\r\n").as_bytes());
        }
    }

    /// An invalidation push on one of client `key`'s feeds: for its REDIRECT target.
    pub(crate) fn redirect_invalidation(&mut self, key: usize, push: &[u8]) {
        let Some(c) = self.clients.get(key) else {
            return;
        };
        let Some(r) = c.tracking.as_ref().and_then(|t| t.redirect.as_ref()) else {
            return;
        };
        let items = frame::elements(push).unwrap_or_default();
        if items.len() != 2 || frame::string(items[0]) != Some(&b"invalidate"[..]) {
            return;
        }
        // A flush's null, in the tracking client's protocol (as Redis sends it).
        let value = if frame::is_null(items[1]) && !c.resp3 {
            b"$-1\r\n".to_vec()
        } else {
            items[1].to_vec()
        };
        let target = r.target;
        let tracker = Tracker {
            worker: self.index,
            key,
            id: c.id,
        };
        match self.shared.locate(target) {
            Some((w, k)) if w == self.index => self.invalidate_target(target, k, &value, tracker),
            Some((w, k)) => self.shared.post(
                w,
                Mail::Invalidate {
                    target,
                    key: k,
                    value,
                    tracker,
                },
            ),
            None => self.redirect_broken(tracker),
        }
    }

    /// Tells client `target` (key `key` here) that `value`'s keys changed.
    pub(crate) fn invalidate_target(
        &mut self,
        target: u64,
        key: usize,
        value: &[u8],
        tracker: Tracker,
    ) {
        let Some(c) = self.clients.get(key).filter(|c| c.id == target) else {
            if tracker.worker == self.index {
                return self.redirect_broken(tracker);
            }
            return self
                .shared
                .post(tracker.worker, Mail::RedirectBroken(tracker));
        };
        let mut frame = Vec::with_capacity(value.len() + 48);
        if c.resp3 {
            frame.extend_from_slice(b">2\r\n$10\r\ninvalidate\r\n");
        } else if c.subscribed() {
            frame.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n");
        } else {
            // RESP2 without a subscription: nowhere to say it.
            return;
        }
        frame.extend_from_slice(value);
        self.push_to(key, &frame);
    }

    /// The target of `tracker`'s REDIRECT has gone: once, a RESP3 client hears it.
    pub(crate) fn redirect_broken(&mut self, tracker: Tracker) {
        let Some(c) = self
            .clients
            .get_mut(tracker.key)
            .filter(|c| c.id == tracker.id)
        else {
            return;
        };
        let Some(r) = c.tracking.as_mut().and_then(|t| t.redirect.as_mut()) else {
            return;
        };
        if r.broken {
            return;
        }
        r.broken = true;
        if c.resp3 {
            let target = r.target as i64;
            let mut frame = b">2\r\n$21\r\ntracking-redir-broken\r\n".to_vec();
            frame.push(b':');
            frame.extend_from_slice(itoa::Buffer::new().format(target).as_bytes());
            frame.extend_from_slice(b"\r\n");
            self.push_to(tracker.key, &frame);
        }
    }

    /// CLIENT TRACKING OFF on every connection where it is on.
    fn tracking_off(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let c = &mut self.clients[key];
        c.tracking = None;
        c.caching = false;
        for b in self.feed_backends(key, Feed::Invalidations) {
            self.drop_private(key, b);
        }
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
        for b in self.feed_backends(key, Feed::Invalidations) {
            self.drop_private(key, b);
        }
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
        let c = &self.clients[key];
        if let Some(t) = &c.tracking
            && let Some(r) = &t.redirect
        {
            // The shards name the feeds: the proxy knows the target.
            let info = TrackingInfo {
                on: true,
                bcast: t.bcast,
                optin: t.optin,
                optout: t.optout,
                caching: c.caching,
                noloop: t.noloop,
                broken_redirect: r.broken,
                redirect: r.target,
                prefixes: &r.prefixes,
            };
            let mut out = Vec::new();
            info.write(&mut tessera_protocol::Reply::new(&mut out, c.resp3));
            return self.reply_with(key, |r| r.raw(&out));
        }
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

    /// `CLIENT GETREDIR`: the target of a REDIRECT, else as the shards answer.
    pub(crate) fn get_redirect(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let target = self.clients[key]
            .tracking
            .as_ref()
            .and_then(|t| t.redirect.as_ref())
            .map(|r| r.target as i64);
        match target {
            Some(id) => self.reply_with(key, |r| r.int(id)),
            None => self.forward_to_any(key, raw, args),
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
