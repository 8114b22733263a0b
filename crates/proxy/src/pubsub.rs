//! Pub/sub through the proxy.
//!
//! A client's subscriptions live on its private connections to the shards (the ones blocking
//! commands use): a channel on the shard serving the channel's slot, where PUBLISH through the
//! proxy sends its messages too; a pattern on every shard, since a channel of any slot may
//! match it; a shard channel on its slot's shard, as in Redis Cluster. The proxy keeps the
//! client's subscriptions itself and makes the confirmations, with the client's counts (a
//! shard only knows the subscriptions on its own connection):
//!
//! - SUBSCRIBE's confirmations wait for every shard involved to confirm, so a message
//!   published once the client has its confirmation reaches it;
//! - UNSUBSCRIBE is confirmed at once: from then on the proxy drops messages for what the
//!   client left, the same as a shard would, even those the shard sent before it read the
//!   UNSUBSCRIBE.
//!
//! Messages go to the client as they come, after the replies it is owed. A client whose
//! connection to a shard holding its subscriptions fails is disconnected, as it would be if
//! that shard were its server, so that its client library subscribes again.

use std::collections::HashMap;

use indexmap::IndexMap;
use tessera_protocol::clients::{self, Family};
use tessera_protocol::command::CommandSpec;
use tessera_protocol::frame;
use tessera_protocol::reply::Reply;
use tessera_protocol::{Args, key_hash_slot};

use crate::merge::{Gather, Merge};
use crate::worker::{To, Worker, write_command};

/// A client's subscriptions, each with the private connections it is on.
#[derive(Default)]
pub(crate) struct Subs {
    channels: IndexMap<Vec<u8>, Vec<usize>>,
    patterns: IndexMap<Vec<u8>, Vec<usize>>,
    shard: IndexMap<Vec<u8>, Vec<usize>>,
    /// Unsubscriptions sent and not yet confirmed, by (connection, family, name): until the
    /// shard confirms, it may still send messages published before, which the client is owed.
    leaving: HashMap<(usize, Family, Vec<u8>), u32>,
}

impl Subs {
    fn map(&mut self, f: Family) -> &mut IndexMap<Vec<u8>, Vec<usize>> {
        match f {
            Family::Channel => &mut self.channels,
            Family::Pattern => &mut self.patterns,
            Family::Shard => &mut self.shard,
        }
    }

    /// The count a confirmation carries: channels and patterns together, shard channels
    /// apart (as Redis 7.0 counts).
    fn count(&self, f: Family) -> usize {
        match f {
            Family::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// (channels, patterns, shard channels), as CLIENT LIST's `sub`, `psub`, `ssub`.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    /// The channels and shard channels, and the patterns (for the ACL's channel rules).
    pub(crate) fn names(
        &self,
    ) -> (
        impl Iterator<Item = &[u8]> + '_,
        impl Iterator<Item = &[u8]> + '_,
    ) {
        (
            self.channels
                .keys()
                .chain(self.shard.keys())
                .map(Vec::as_slice),
            self.patterns.keys().map(Vec::as_slice),
        )
    }

    /// True while the client has a subscription (RESP2's subscribed mode).
    pub(crate) fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    /// True when nothing is subscribed or being left.
    fn is_done(&self) -> bool {
        !self.subscribed() && self.leaving.is_empty()
    }

    fn is_subscribed(&self, family: Family, name: &[u8]) -> bool {
        match family {
            Family::Channel => self.channels.contains_key(name),
            Family::Pattern => self.patterns.contains_key(name),
            Family::Shard => self.shard.contains_key(name),
        }
    }

    /// True when the client is owed a message of `family` for `name` that came on `b`.
    pub(crate) fn wants(&self, b: usize, family: Family, name: &[u8]) -> bool {
        self.is_subscribed(family, name)
            || (!self.leaving.is_empty() && self.leaving.contains_key(&(b, family, name.to_vec())))
    }

    /// The shard on `b` confirmed leaving `name`: what it sends for it now is not owed.
    /// Returns true when nothing is left to track.
    pub(crate) fn left(&mut self, b: usize, family: Family, name: &[u8]) -> bool {
        let k = (b, family, name.to_vec());
        if let Some(n) = self.leaving.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.leaving.remove(&k);
            }
        }
        self.is_done()
    }

    /// True when a subscription is held on connection `b`.
    pub(crate) fn uses(&self, b: usize) -> bool {
        [&self.channels, &self.patterns, &self.shard]
            .iter()
            .any(|m| m.values().any(|bs| bs.contains(&b)))
    }
}

/// What a frame from a client's private connection is, for pub/sub.
pub(crate) enum PushKind<'a> {
    /// A message for `name` (the channel, or the pattern of a `pmessage`).
    Message(Family, &'a [u8]),
    /// A (un)subscribe confirmation: the connection now has `count` subscriptions of the
    /// family (`Shard`, or the channels and patterns together); for an unsubscribe, the name
    /// left (`None` when nothing was subscribed).
    Confirm(Family, i64, Option<&'a [u8]>),
    Other,
}

/// Classifies an array or push frame by its first element.
pub(crate) fn push_kind(frame: &[u8]) -> PushKind<'_> {
    let Some(items) = frame::elements(frame) else {
        return PushKind::Other;
    };
    let (Some(word), Some(name)) = (items.first().and_then(|w| frame::string(w)), items.get(1))
    else {
        return PushKind::Other;
    };
    let name = frame::string(name).unwrap_or_default();
    match (word, items.len()) {
        (b"message", 3) => PushKind::Message(Family::Channel, name),
        (b"pmessage", 4) => PushKind::Message(Family::Pattern, name),
        (b"smessage", 3) => PushKind::Message(Family::Shard, name),
        (
            b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
            | b"sunsubscribe",
            3,
        ) => match frame::integer(items[2]) {
            Some(n) => {
                let left = matches!(word, b"unsubscribe" | b"punsubscribe" | b"sunsubscribe")
                    .then(|| frame::string(items[1]))
                    .flatten();
                let family = Family::of(std::str::from_utf8(word).unwrap_or_default());
                PushKind::Confirm(family, n, left)
            }
            None => PushKind::Other,
        },
        _ => PushKind::Other,
    }
}

fn confirmation(out: &mut Vec<u8>, resp3: bool, word: &str, name: Option<&[u8]>, count: usize) {
    let mut r = Reply::new(out, resp3);
    r.push(3);
    r.bulk(word.as_bytes());
    match name {
        Some(n) => r.bulk(n),
        None => r.null(),
    }
    r.int(count as i64);
}

impl Worker {
    /// The private connections a subscription of `family` to `name` goes on.
    fn subscription_backends(
        &mut self,
        key: usize,
        family: Family,
        name: &[u8],
    ) -> Result<Vec<usize>, String> {
        let addrs = match family {
            Family::Pattern => self.primary_addrs()?,
            _ => vec![self.slot_addr(key_hash_slot(name))?],
        };
        addrs
            .iter()
            .map(|addr| self.private_backend(key, addr))
            .collect()
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE.
    pub(crate) fn subscribe(&mut self, key: usize, spec: &'static CommandSpec, args: &Args<'_>) {
        let family = Family::of(spec.name);
        if family == Family::Shard
            && let Err(e) = crate::commands::slot_of(spec, args)
        {
            return self.reply_error(key, e);
        }
        // Every connection first: a shard that cannot be reached subscribes nothing. (A map:
        // one command may name any number of channels.)
        let mut wanted: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for name in args.iter_from(1) {
            let known = self.clients[key]
                .subs
                .as_ref()
                .is_some_and(|s| s.is_subscribed(family, name));
            if known || wanted.contains_key(name) {
                continue;
            }
            match self.subscription_backends(key, family, name) {
                Ok(bs) => {
                    wanted.insert(name, bs);
                }
                Err(e) => return self.reply_error(key, &e),
            }
        }
        let c = &mut self.clients[key];
        let resp3 = c.resp3;
        let subs = c.subs.get_or_insert_default();
        let mut made = Vec::new();
        let mut sends = Vec::new();
        for name in args.iter_from(1) {
            if let Some(bs) = wanted.remove(name) {
                sends.extend(bs.iter().map(|&b| (b, name)));
                subs.map(family).insert(name.to_vec(), bs);
            }
            confirmation(
                &mut made,
                resp3,
                family.words().0,
                Some(name),
                subs.count(family),
            );
        }
        if sends.is_empty() {
            return self.reply_with(key, |r| r.raw(&made));
        }
        let mut gather = Gather::new(Merge::Confirm, sends.len());
        gather.made = made;
        let part = self.expect_parts(key, gather);
        let word = family.words().0.as_bytes();
        for (i, (b, name)) in sends.into_iter().enumerate() {
            self.send_subscription(b, part(i), |o| write_command(o, &[word, name]));
        }
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: confirmed once every shard involved has
    /// confirmed, so that the messages published before reach the client first, as they
    /// would from one redis-server.
    pub(crate) fn unsubscribe(&mut self, key: usize, spec: &'static CommandSpec, args: &Args<'_>) {
        let family = Family::of(spec.name);
        let word = family.words().1;
        let c = &mut self.clients[key];
        let resp3 = c.resp3;
        let names: Vec<Vec<u8>> = match &mut c.subs {
            _ if args.len() > 1 => args.iter_from(1).map(<[u8]>::to_vec).collect(),
            Some(subs) => subs.map(family).keys().cloned().collect(),
            None => Vec::new(),
        };
        let mut made = Vec::new();
        let mut sends = Vec::new();
        if names.is_empty() {
            let count = c.subs.as_ref().map_or(0, |s| s.count(family));
            confirmation(&mut made, resp3, word, None, count);
        }
        for name in &names {
            let subs = c.subs.get_or_insert_default();
            if let Some(bs) = subs.map(family).swap_remove(name.as_slice()) {
                for &b in &bs {
                    *subs.leaving.entry((b, family, name.clone())).or_default() += 1;
                }
                sends.extend(bs.into_iter().map(|b| (b, name)));
            }
            confirmation(&mut made, resp3, word, Some(name), subs.count(family));
        }
        if c.subs.as_ref().is_some_and(|s| s.is_done()) {
            c.subs = None;
        }
        if sends.is_empty() {
            return self.reply_with(key, |r| r.raw(&made));
        }
        let mut gather = Gather::new(Merge::Confirm, sends.len());
        gather.made = made;
        let part = self.expect_parts(key, gather);
        for (i, (b, name)) in sends.into_iter().enumerate() {
            self.send_subscription(b, part(i), |o| write_command(o, &[word.as_bytes(), name]));
        }
    }

    /// Ends every subscription of the client (RESET).
    pub(crate) fn unsubscribe_all(&mut self, key: usize) {
        let Some(mut subs) = self.clients[key].subs.take() else {
            return;
        };
        for family in [Family::Channel, Family::Pattern, Family::Shard] {
            let word = family.words().1.as_bytes();
            for (name, bs) in std::mem::take(subs.map(family)) {
                for b in bs {
                    self.send_subscription(b, To::Discard, |o| {
                        write_command(o, &[word, name.as_slice()])
                    });
                }
            }
        }
    }

    /// PING in RESP2 subscribed mode: `["pong", message]`.
    pub(crate) fn subscribed_ping(&mut self, key: usize, args: &Args<'_>) {
        let m = args.try_get(1).map(<[u8]>::to_vec);
        self.reply_with(key, |r| clients::subscribed_pong(r, m.as_deref()));
    }
}
