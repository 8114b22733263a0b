//! Pub/sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, SSUBSCRIBE, SUNSUBSCRIBE,
//! SPUBLISH, PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB (Redis's pubsub.c).
//!
//! Messages are pushes in RESP3 and arrays in RESP2. A RESP2 client with a subscription may only
//! run the subscription commands, PING, QUIT and RESET (the dispatcher checks). Subscribers that
//! do not read their messages are disconnected by `client-output-buffer-limit pubsub`.

use std::collections::HashMap;

use tessera_acl::internal::Internal;
use tessera_protocol::clients::Family as Kind;
use tessera_protocol::{Args, Reply, glob};

use crate::dispatch::{Call, CmdResult};
use crate::server::Server;

/// Subscribers per channel, per pattern and per shard channel, in subscription order.
#[derive(Debug, Default)]
pub struct PubSub {
    channels: HashMap<Vec<u8>, Vec<usize>>,
    patterns: HashMap<Vec<u8>, Vec<usize>>,
    shard_channels: HashMap<Vec<u8>, Vec<usize>>,
}

impl PubSub {
    /// Channels with subscribers (`pubsub_channels`).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Patterns with subscribers (`pubsub_patterns`).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Drops the subscriptions of a client that is gone.
    pub(crate) fn forget(&mut self, tok: usize, c: &crate::client::Client) {
        for (map, names) in [
            (&mut self.channels, &c.subscriptions),
            (&mut self.patterns, &c.psubscriptions),
            (&mut self.shard_channels, &c.ssubscriptions),
        ] {
            for name in names {
                if let Some(list) = map.get_mut(name) {
                    list.retain(|&t| t != tok);
                    if list.is_empty() {
                        map.remove(name);
                    }
                }
            }
        }
    }

    /// Shard channels with subscribers (`pubsubshard_channels`).
    pub fn shard_channel_count(&self) -> usize {
        self.shard_channels.len()
    }
}

impl Server {
    fn subs_map(&mut self, kind: Kind) -> &mut HashMap<Vec<u8>, Vec<usize>> {
        match kind {
            Kind::Channel => &mut self.pubsub.channels,
            Kind::Pattern => &mut self.pubsub.patterns,
            Kind::Shard => &mut self.pubsub.shard_channels,
        }
    }

    /// The count a (un)subscribe reply carries: channels and patterns, or shard channels.
    fn subscription_count(&self, tok: usize, kind: Kind) -> usize {
        let c = &self.clients[tok];
        match kind {
            Kind::Shard => c.ssubscriptions.len(),
            _ => c.subscriptions.len() + c.psubscriptions.len(),
        }
    }

    fn client_subs(&mut self, tok: usize, kind: Kind) -> &mut Vec<Vec<u8>> {
        let c = &mut self.clients[tok];
        match kind {
            Kind::Channel => &mut c.subscriptions,
            Kind::Pattern => &mut c.psubscriptions,
            Kind::Shard => &mut c.ssubscriptions,
        }
    }

    fn unsubscribe_one(&mut self, tok: usize, kind: Kind, name: &[u8]) -> bool {
        let subs = self.client_subs(tok, kind);
        let Some(pos) = subs.iter().position(|s| s == name) else {
            return false;
        };
        subs.remove(pos);
        let map = self.subs_map(kind);
        if let Some(list) = map.get_mut(name) {
            list.retain(|&t| t != tok);
            if list.is_empty() {
                map.remove(name);
            }
        }
        true
    }

    /// Drops every subscription of client `tok` (disconnect, RESET), without replies.
    pub(crate) fn unsubscribe_all_silently(&mut self, tok: usize) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            let names = std::mem::take(self.client_subs(tok, kind));
            let map = self.subs_map(kind);
            for name in names {
                if let Some(list) = map.get_mut(&name) {
                    list.retain(|&t| t != tok);
                    if list.is_empty() {
                        map.remove(&name);
                    }
                }
            }
        }
    }

    /// Delivers a message to client `t`; `own` is the publisher's output when `t` is itself.
    fn deliver(&mut self, t: usize, own: (usize, &mut Vec<u8>), parts: &[&[u8]]) {
        let resp3 = self.clients.get(t).is_some_and(|c| c.resp3);
        let write = |out: &mut Vec<u8>| {
            let mut r = Reply::new(out, resp3);
            r.push(parts.len());
            for p in parts {
                r.bulk(p);
            }
        };
        if t == own.0 {
            write(own.1);
            return;
        }
        if let Some(io) = self.clients.get_mut(t).and_then(|c| c.io.as_mut()) {
            write(&mut io.out);
            self.schedule_write(t);
            self.check_pubsub_output_limit(t);
        }
    }

    /// Publishes `message` on (non-shard) `channel` for client `caller`, writing to `out`.
    pub(crate) fn publish_message(
        &mut self,
        caller: usize,
        out: &mut Vec<u8>,
        channel: &[u8],
        message: &[u8],
    ) -> usize {
        self.publish(caller, out, channel, message, false, true)
    }

    /// Publishes `message` on `channel`; returns the number of receivers. Without
    /// `proxy_patterns` the proxies' pattern subscriptions are skipped: a proxy makes them on
    /// every shard, and is served a PUBLISH on the shard of its channel's slot only.
    fn publish(
        &mut self,
        caller: usize,
        out: &mut Vec<u8>,
        channel: &[u8],
        message: &[u8],
        shard: bool,
        proxy_patterns: bool,
    ) -> usize {
        let mut receivers = 0;
        let map = if shard {
            &self.pubsub.shard_channels
        } else {
            &self.pubsub.channels
        };
        let subscribers = map.get(channel).cloned().unwrap_or_default();
        let word: &[u8] = if shard { b"smessage" } else { b"message" };
        for t in subscribers {
            self.deliver(t, (caller, &mut *out), &[word, channel, message]);
            receivers += 1;
        }
        if !shard {
            let matching: Vec<(Vec<u8>, Vec<usize>)> = self
                .pubsub
                .patterns
                .iter()
                .filter(|(p, _)| glob::matches(p, channel, false))
                .map(|(p, t)| (p.clone(), t.clone()))
                .collect();
            for (pattern, subscribers) in matching {
                for t in subscribers {
                    if !proxy_patterns
                        && self
                            .clients
                            .get(t)
                            .is_some_and(|c| c.internal == Some(Internal::Proxy))
                    {
                        continue;
                    }
                    self.deliver(
                        t,
                        (caller, &mut *out),
                        &[b"pmessage", &pattern, channel, message],
                    );
                    receivers += 1;
                }
            }
        }
        receivers
    }
}

fn reply_sub(r: &mut Reply<'_>, word: &[u8], name: Option<&[u8]>, count: usize) {
    r.push(3);
    r.bulk(word);
    match name {
        Some(n) => r.bulk(n),
        None => r.null(),
    }
    r.int(count as i64);
}

/// `SUBSCRIBE channel [channel ...]`, `PSUBSCRIBE pattern [pattern ...]`,
/// `SSUBSCRIBE shardchannel [shardchannel ...]`
pub fn subscribe(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let kind = Kind::of(call.spec.name);
    let tok = call.client;
    for name in args.iter_from(1) {
        let subs = s.client_subs(tok, kind);
        if !subs.iter().any(|x| x == name) {
            subs.push(name.to_vec());
            s.subs_map(kind).entry(name.to_vec()).or_default().push(tok);
        }
        let count = s.subscription_count(tok, kind);
        reply_sub(
            &mut call.reply(),
            kind.words().0.as_bytes(),
            Some(name),
            count,
        );
    }
    Ok(())
}

/// `UNSUBSCRIBE [channel ...]`, `PUNSUBSCRIBE [pattern ...]`, `SUNSUBSCRIBE [shardchannel ...]`
pub fn unsubscribe(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let kind = Kind::of(call.spec.name);
    let tok = call.client;
    let word = kind.words().1.as_bytes();
    let names: Vec<Vec<u8>> = if args.len() > 1 {
        args.iter_from(1).map(<[u8]>::to_vec).collect()
    } else {
        s.client_subs(tok, kind).clone()
    };
    if names.is_empty() {
        let count = s.subscription_count(tok, kind);
        reply_sub(&mut call.reply(), word, None, count);
        return Ok(());
    }
    for name in names {
        s.unsubscribe_one(tok, kind, &name);
        let count = s.subscription_count(tok, kind);
        reply_sub(&mut call.reply(), word, Some(&name), count);
    }
    Ok(())
}

/// `PUBLISH channel message`, `SPUBLISH shardchannel message`
///
/// In a cluster a PUBLISH reaches every node of the database and an SPUBLISH the replicas of
/// the shard (`crate::bus`), as in Redis Cluster; the reply counts this node's receivers, as
/// Redis Cluster's does.
pub fn publish(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let shard = call.spec.name == "spublish";
    let (channel, message) = (args.get(1), args.get(2));
    let proxy_patterns = !s.cluster.enabled || s.cluster.serves_channel(channel);
    let n = s.publish(
        call.client,
        call.out,
        channel,
        message,
        shard,
        proxy_patterns,
    );
    if let Some(bus) = &s.cluster.bus
        && s.clients
            .get(call.client)
            .is_none_or(|c| c.internal != Some(Internal::Bus))
    {
        bus.forward(channel, message, shard);
    }
    call.reply().int(n as i64);
    Ok(())
}

/// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`
pub fn pubsub(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match call.spec.name {
        "pubsub|channels" | "pubsub|shardchannels" => {
            let map = if call.spec.name == "pubsub|channels" {
                &s.pubsub.channels
            } else {
                &s.pubsub.shard_channels
            };
            let pattern = args.try_get(2);
            let mut names: Vec<&Vec<u8>> = map
                .keys()
                .filter(|c| pattern.is_none_or(|p| glob::matches(p, c, false)))
                .collect();
            names.sort();
            let mut r = Call::reply_to(call.out, call.resp3);
            r.array(names.len());
            for n in names {
                r.bulk(n);
            }
        }
        "pubsub|numsub" | "pubsub|shardnumsub" => {
            let map = if call.spec.name == "pubsub|numsub" {
                &s.pubsub.channels
            } else {
                &s.pubsub.shard_channels
            };
            // A flat array even in RESP3, as Redis replies.
            let mut r = Call::reply_to(call.out, call.resp3);
            r.array(2 * (args.len() - 2));
            for ch in args.iter_from(2) {
                r.bulk(ch);
                r.int(map.get(ch).map_or(0, Vec::len) as i64);
            }
        }
        "pubsub|numpat" => call.reply().int(s.pubsub.patterns.len() as i64),
        _ => return super::server::help(call, PUBSUB_HELP),
    }
    Ok(())
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// PING in RESP2 subscribed mode: `["pong", message]`.
pub fn subscribed_ping(call: &mut Call<'_>, args: &Args<'_>) {
    tessera_protocol::clients::subscribed_pong(&mut call.reply(), args.try_get(1));
}

/// Parses `client-output-buffer-limit`: `<class> <hard> <soft> <seconds>` groups.
pub fn parse_output_limits(v: &str) -> Option<Vec<(String, u64, u64, u64)>> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.is_empty() || !parts.len().is_multiple_of(4) {
        return None;
    }
    parts
        .chunks(4)
        .map(|c| {
            let class = c[0].to_ascii_lowercase();
            let class = if class == "slave" {
                "replica".to_string()
            } else {
                class
            };
            if !["normal", "replica", "pubsub"].contains(&class.as_str()) {
                return None;
            }
            Some((
                class,
                crate::config::parse_memory(c[1])?,
                crate::config::parse_memory(c[2])?,
                c[3].parse().ok()?,
            ))
        })
        .collect()
}

impl Server {
    /// Closes a subscriber whose unsent messages pass the pubsub class's hard limit, or its soft
    /// limit for longer than the soft seconds (`client-output-buffer-limit pubsub`).
    pub(crate) fn check_pubsub_output_limit(&mut self, t: usize) {
        let Some(pending) = self.clients.get(t).map(|c| c.pending_output() as u64) else {
            return;
        };
        self.check_output_limit(t, pending);
    }

    /// Applies `client-output-buffer-limit` to client `t` with `pending` unsent bytes: the
    /// pubsub class for a subscribed client, the normal class otherwise (replicas arrive with
    /// issue 5). Returns true if the client is to be closed.
    pub(crate) fn check_output_limit(&mut self, t: usize, pending: u64) -> bool {
        let Some(c) = self.clients.get(t) else {
            return false;
        };
        let replica = c
            .replica
            .as_ref()
            .is_some_and(|r| r.phase != crate::repl::primary::Phase::Handshake);
        let class = if replica {
            "replica"
        } else if c.in_pubsub() {
            "pubsub"
        } else {
            "normal"
        };
        let (hard, soft, secs) = self.config.output_limit(class);
        if hard == 0 && soft == 0 {
            return false;
        }
        let c = self.clients.get_mut(t).expect("looked up above");
        let now = std::time::Instant::now();
        let over_soft = soft > 0 && pending > soft;
        if !over_soft {
            c.soft_limit_since = None;
        }
        let soft_expired =
            over_soft && c.soft_limit_since.get_or_insert(now).elapsed().as_secs() >= secs;
        if (hard > 0 && pending > hard) || soft_expired {
            tracing::warn!(client = %c.addr, pending, class, "client scheduled to be closed ASAP for overcoming of output buffer limits");
            c.close_asap = true;
            return true;
        }
        false
    }
}
