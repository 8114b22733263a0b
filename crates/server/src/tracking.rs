//! Client-side caching (Redis's `tracking.c`): the keys each tracking client read, the
//! invalidation messages when they change (RESP3 pushes, or `__redis__:invalidate` messages to a
//! RESP2 client a connection redirects to), broadcast mode by key prefix, and
//! `CLIENT TRACKING | CACHING | GETREDIR | TRACKINGINFO`.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use tessera_protocol::clients::{TrackingInfo, TrackingOptions};
use tessera_protocol::command::{CommandSpec, flag};
use tessera_protocol::{Args, Reply};

use crate::server::Server;

/// A client's tracking mode (`CLIENT TRACKING ON ...`).
#[derive(Clone, Debug, Default)]
pub struct ClientTracking {
    /// The client id invalidations go to, or 0 for the client itself.
    pub redirect: u64,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// `CLIENT CACHING yes|no` was given for the next command.
    pub caching: bool,
    /// The redirect target has gone.
    pub broken_redirect: bool,
    /// Broadcast prefixes, sorted.
    pub prefixes: Vec<Vec<u8>>,
}

/// One broadcast prefix: the keys under it changed since the last turn (with the id of the
/// client that changed each, for NOLOOP), and the clients following it.
#[derive(Default)]
struct Bcast {
    keys: BTreeMap<Vec<u8>, Option<u64>>,
    clients: Vec<u64>,
}

/// What a message invalidates: keys, or everything (a flush), as the null of a protocol.
enum Payload<'a> {
    Keys(&'a [&'a [u8]]),
    All { resp3: bool },
}

#[derive(Default)]
pub struct Tracking {
    /// Keys read by tracking clients, with those clients' ids (indexed, so the limit can
    /// pick a random key).
    table: IndexMap<Vec<u8>, Vec<u64>>,
    /// Turns in a row that found the table over `tracking-table-max-keys` after their effort.
    over_limit: u32,
    /// Entries of `table` over all keys (`tracking_total_items`).
    items: usize,
    prefixes: BTreeMap<Vec<u8>, Bcast>,
    /// Clients with tracking on (`tracking_clients`).
    pub clients: usize,
    /// The client running a command, and the messages for it held until its reply is written
    /// (`None`: a flush).
    current: Option<usize>,
    pending: Vec<Option<Vec<u8>>>,
    depth: u32,
    /// A script read a key: its caller's command keys are tracked when it ends.
    script_read: bool,
}

impl Tracking {
    /// Some client tracks keys or prefixes: modified keys must be reported here.
    #[inline]
    pub fn active(&self) -> bool {
        self.clients > 0 || !self.table.is_empty()
    }

    pub fn total_keys(&self) -> usize {
        self.table.len()
    }

    pub fn total_items(&self) -> usize {
        self.items
    }

    pub fn total_prefixes(&self) -> usize {
        self.prefixes.len()
    }
}

/// True if one of the two is a prefix of the other (Redis's `stringCheckPrefix`).
fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

impl Server {
    /// Marks the start of a command of client `tok` (nested calls from EXEC or scripts keep
    /// the outer one).
    #[inline]
    pub(crate) fn tracking_enter(&mut self, tok: usize) {
        if self.tracking.depth == 0 {
            self.tracking.current = Some(tok);
        }
        self.tracking.depth += 1;
    }

    /// Marks the end of a command: the outermost one writes the invalidations of keys the
    /// client itself changed after its reply, into `out`.
    #[inline]
    pub(crate) fn tracking_leave(&mut self, out: &mut Vec<u8>) {
        self.tracking.depth -= 1;
        if self.tracking.depth == 0 {
            let tok = self.tracking.current.take();
            if !self.tracking.pending.is_empty() {
                self.flush_pending_invalidations(tok, out);
            }
        }
    }

    #[cold]
    fn flush_pending_invalidations(&mut self, tok: Option<usize>, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.tracking.pending);
        let Some(tok) = tok.filter(|&t| self.clients.contains(t)) else {
            return;
        };
        for key in pending {
            match key {
                Some(k) => self.send_tracking(tok, Payload::Keys(&[&k]), Some(out)),
                None => {
                    let resp3 = self.clients[tok].resp3;
                    self.send_tracking(tok, Payload::All { resp3 }, Some(out));
                }
            }
        }
    }

    /// After a read-only command: remembers its keys for the tracking client that ran it.
    /// After a script that read keys: remembers the keys the script was given (Redis 7.0
    /// tracks its caller's command, not the commands the script ran).
    #[inline]
    pub(crate) fn tracking_remember(
        &mut self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) {
        if self.tracking.clients == 0 {
            return;
        }
        let script = matches!(
            spec.name,
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
        );
        let read = if script {
            std::mem::take(&mut self.tracking.script_read)
        } else {
            spec.has(flag::READONLY)
        };
        if read {
            self.remember_keys(tok, spec, args);
        }
    }

    /// A read-only command ran in a script.
    #[inline]
    pub(crate) fn tracking_script_read(&mut self, spec: &'static CommandSpec) {
        if self.tracking.clients > 0 && spec.has(flag::READONLY) {
            self.tracking.script_read = true;
        }
    }

    #[cold]
    fn remember_keys(&mut self, tok: usize, spec: &'static CommandSpec, args: &Args<'_>) {
        if spec.has(flag::PUBSUB) {
            return;
        }
        let Some(c) = self.clients.get(tok) else {
            return;
        };
        let Some(t) = c.tracking.as_ref() else {
            return;
        };
        if t.bcast || (t.optin && !t.caching) || (t.optout && t.caching) {
            return;
        }
        let id = c.id;
        for (pos, _) in spec.key_positions(args).unwrap_or_default() {
            let ids = self
                .tracking
                .table
                .entry(args.get(pos).to_vec())
                .or_default();
            if !ids.contains(&id) {
                ids.push(id);
                self.tracking.items += 1;
            }
        }
    }

    /// A key changed: its readers get an invalidation (the client changing it after its
    /// reply), and broadcast prefixes note it for the end of the turn.
    pub(crate) fn tracking_invalidate(&mut self, key: &[u8]) {
        if !self.tracking.prefixes.is_empty() {
            let modifier = self
                .tracking
                .current
                .and_then(|t| self.clients.get(t))
                .map(|c| c.id);
            for (prefix, b) in self.tracking.prefixes.iter_mut() {
                if key.starts_with(prefix) {
                    b.keys.insert(key.to_vec(), modifier);
                }
            }
        }
        let Some(ids) = self.tracking.table.swap_remove(key) else {
            return;
        };
        self.invalidate_readers(key, ids, None);
    }

    /// Tells the clients in `ids` that `key` is no longer valid. The client running a command
    /// hears it after its reply, or in `before_reply` when that is given.
    fn invalidate_readers(
        &mut self,
        key: &[u8],
        ids: Vec<u64>,
        mut before_reply: Option<&mut Vec<u8>>,
    ) {
        self.tracking.items -= ids.len();
        for id in ids {
            let Some(&t) = self.client_ids.get(&id) else {
                continue;
            };
            let Some(tr) = self.clients[t].tracking.as_ref() else {
                continue;
            };
            if tr.bcast {
                continue;
            }
            if Some(t) == self.tracking.current {
                if tr.noloop {
                    continue;
                }
                match before_reply.as_deref_mut() {
                    Some(out) => self.send_tracking(t, Payload::Keys(&[key]), Some(out)),
                    None => self.tracking.pending.push(Some(key.to_vec())),
                }
            } else {
                self.send_tracking(t, Payload::Keys(&[key]), None);
            }
        }
    }

    /// Keeps the table within `tracking-table-max-keys` before a command runs, as Redis's
    /// `trackingLimitUsedSlots`: random keys are forgotten and their readers told, as if they
    /// had changed (broadcast prefixes are not told). Each call forgets at most 100 keys per
    /// call in a row that found the table still over.
    #[inline]
    pub(crate) fn tracking_limit(&mut self, out: &mut Vec<u8>) {
        let max = self.config.tracking_table_max_keys;
        if max > 0 && self.tracking.table.len() > max {
            self.forget_tracked_keys(max, out);
        } else {
            self.tracking.over_limit = 0;
        }
    }

    #[cold]
    fn forget_tracked_keys(&mut self, max: usize, out: &mut Vec<u8>) {
        let effort = 100 * (self.tracking.over_limit as usize + 1);
        for _ in 0..effort {
            let len = self.tracking.table.len();
            if len <= max {
                self.tracking.over_limit = 0;
                return;
            }
            let i = rand::random_range(0..len);
            let Some((key, ids)) = self.tracking.table.swap_remove_index(i) else {
                break;
            };
            self.invalidate_readers(&key, ids, Some(out));
        }
        if self.tracking.table.len() > max {
            self.tracking.over_limit = self.tracking.over_limit.saturating_add(1);
        } else {
            self.tracking.over_limit = 0;
        }
    }

    /// FLUSHALL / FLUSHDB: every tracking client is told everything is gone, and the table is
    /// emptied.
    pub(crate) fn tracking_flush(&mut self) {
        if self.tracking.clients > 0 {
            let targets: Vec<(usize, bool)> = self
                .clients
                .iter()
                .filter(|(_, c)| c.tracking.is_some())
                .map(|(t, c)| (t, c.resp3))
                .collect();
            for (t, resp3) in targets {
                if Some(t) == self.tracking.current {
                    self.tracking.pending.push(None);
                } else {
                    self.send_tracking(t, Payload::All { resp3 }, None);
                }
            }
        }
        self.tracking.table.clear();
        self.tracking.items = 0;
    }

    /// Sends the broadcast invalidations collected this turn (from `before_sleep`).
    pub(crate) fn tracking_broadcast(&mut self) {
        if self.tracking.prefixes.values().all(|b| b.keys.is_empty()) {
            return;
        }
        // Each prefix's changed keys are taken once and sent to every client following it.
        let changed: Vec<Bcast> = self
            .tracking
            .prefixes
            .values_mut()
            .filter(|b| !b.keys.is_empty())
            .map(|b| Bcast {
                keys: std::mem::take(&mut b.keys),
                clients: b.clients.clone(),
            })
            .collect();
        for Bcast { keys, clients } in &changed {
            for &id in clients {
                let Some(&t) = self.client_ids.get(&id) else {
                    continue;
                };
                let noloop = self.clients[t]
                    .tracking
                    .as_ref()
                    .is_some_and(|tr| tr.noloop);
                let list: Vec<&[u8]> = keys
                    .iter()
                    .filter(|(_, by)| !(noloop && **by == Some(id)))
                    .map(|(k, _)| &k[..])
                    .collect();
                if !list.is_empty() {
                    self.send_tracking(t, Payload::Keys(&list), None);
                }
            }
        }
    }

    /// Writes an invalidation for tracking client `t`: to itself in RESP3, or to its redirect
    /// target (a RESP3 push, or a `__redis__:invalidate` message to a subscribed RESP2
    /// client). `own`: the output of the client running the command, when `t` is that client.
    fn send_tracking(&mut self, t: usize, payload: Payload<'_>, own: Option<&mut Vec<u8>>) {
        let Some(tr) = self.clients.get(t).and_then(|c| c.tracking.as_ref()) else {
            return;
        };
        let mut target = t;
        let mut redirected = false;
        if tr.redirect != 0 {
            match self.client_ids.get(&tr.redirect) {
                Some(&r) => {
                    target = r;
                    redirected = true;
                }
                None => {
                    let id = tr.redirect;
                    let c = &mut self.clients[t];
                    if let Some(tr) = c.tracking.as_mut() {
                        tr.broken_redirect = true;
                    }
                    if c.resp3 {
                        self.write_to(t, own, |r| {
                            r.push(2);
                            r.bulk(b"tracking-redir-broken");
                            r.int(id as i64);
                        });
                    }
                    return;
                }
            }
        }
        let c = &self.clients[target];
        let (resp3, subscribed) = (c.resp3, c.in_pubsub());
        if !(resp3 || redirected && subscribed) {
            return;
        }
        let own = if target == t { own } else { None };
        self.write_to(target, own, |r| {
            if resp3 {
                r.push(2);
                r.bulk(b"invalidate");
            } else {
                r.array(3);
                r.bulk(b"message");
                r.bulk(b"__redis__:invalidate");
            }
            match payload {
                Payload::Keys(keys) => {
                    r.array(keys.len());
                    for k in keys {
                        r.bulk(k);
                    }
                }
                Payload::All { resp3 } => r.raw(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            }
        });
    }

    /// Writes into client `t`'s output: `own` when given (the running client's buffer), else
    /// the client's buffer, scheduling the write.
    fn write_to(&mut self, t: usize, own: Option<&mut Vec<u8>>, f: impl FnOnce(&mut Reply<'_>)) {
        let resp3 = self.clients[t].resp3;
        if let Some(out) = own {
            f(&mut Reply::new(out, resp3));
            return;
        }
        if let Some(io) = self.clients[t].io.as_mut() {
            f(&mut Reply::new(&mut io.out, resp3));
            self.schedule_write(t);
        }
    }

    /// Turns tracking off for client `tok` (CLIENT TRACKING OFF, RESET, disconnect).
    pub(crate) fn disable_tracking(&mut self, tok: usize) {
        let Some(c) = self.clients.get_mut(tok) else {
            return;
        };
        let id = c.id;
        let Some(tr) = c.tracking.take() else {
            return;
        };
        self.forget_prefixes(id, &tr.prefixes);
        self.tracking.clients -= 1;
        self.update_expired_logging();
    }

    fn forget_prefixes(&mut self, id: u64, prefixes: &[Vec<u8>]) {
        for p in prefixes {
            if let Some(b) = self.tracking.prefixes.get_mut(p) {
                b.clients.retain(|&c| c != id);
                if b.clients.is_empty() {
                    self.tracking.prefixes.remove(p);
                }
            }
        }
    }
}

/// `CLIENT TRACKING on|off [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`
pub(crate) fn client_tracking(s: &mut Server, tok: usize, args: &Args<'_>) -> Result<(), String> {
    let is = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
    let TrackingOptions {
        redirect,
        bcast,
        optin,
        optout,
        noloop,
        mut prefixes,
    } = TrackingOptions::parse(args, |id| s.client_ids.contains_key(&id))?;
    let redirect = redirect.map_or(0, |(id, _)| id);
    let opts = ClientTracking {
        bcast,
        optin,
        optout,
        noloop,
        ..ClientTracking::default()
    };
    let mode = args.get(2);
    if is(mode, "off") {
        s.disable_tracking(tok);
        return Ok(());
    }
    if !is(mode, "on") {
        return Err("ERR syntax error".into());
    }
    if !opts.bcast && !prefixes.is_empty() {
        return Err("ERR PREFIX option requires BCAST mode to be enabled".into());
    }
    let current = s.clients[tok].tracking.clone();
    if let Some(cur) = &current
        && cur.bcast != opts.bcast
    {
        return Err("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    if opts.bcast && (opts.optin || opts.optout) {
        return Err("ERR OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if opts.optin && opts.optout {
        return Err("ERR You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if let Some(cur) = &current
        && ((opts.optin && cur.optout) || (opts.optout && cur.optin))
    {
        return Err("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if opts.bcast {
        let existing = current.as_ref().map_or(&[][..], |c| &c.prefixes[..]);
        for (i, p) in prefixes.iter().enumerate() {
            if let Some(e) = existing.iter().find(|e| overlaps(e, p)) {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                    lossy(p),
                    lossy(e)
                ));
            }
            if let Some(q) = prefixes[i + 1..].iter().find(|q| overlaps(p, q)) {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    lossy(p),
                    lossy(q)
                ));
            }
        }
        if prefixes.is_empty() {
            prefixes.push(Vec::new());
        }
    }
    // Enabling again keeps the prefixes already followed and adds the new ones.
    let id = s.clients[tok].id;
    let mut all = current.map(|c| c.prefixes).unwrap_or_default();
    if opts.bcast {
        for p in prefixes {
            let b = s.tracking.prefixes.entry(p.clone()).or_default();
            if !b.clients.contains(&id) {
                b.clients.push(id);
            }
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all.sort();
    }
    let was_on = s.clients[tok].tracking.is_some();
    s.clients[tok].tracking = Some(ClientTracking {
        redirect,
        prefixes: all,
        caching: false,
        broken_redirect: false,
        ..opts
    });
    if !was_on {
        s.tracking.clients += 1;
        s.update_expired_logging();
    }
    Ok(())
}

/// `CLIENT CACHING yes|no`
pub(crate) fn client_caching(s: &mut Server, tok: usize, arg: &[u8]) -> Result<(), &'static str> {
    let Some(tr) = s.clients[tok].tracking.as_mut() else {
        return Err(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        );
    };
    if arg.eq_ignore_ascii_case(b"yes") {
        if !tr.optin {
            return Err(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
    } else if arg.eq_ignore_ascii_case(b"no") {
        if !tr.optout {
            return Err(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
    } else {
        return Err("ERR syntax error");
    }
    tr.caching = true;
    Ok(())
}

/// `CLIENT TRACKINGINFO`
pub(crate) fn tracking_info(s: &Server, tok: usize, r: &mut Reply<'_>) {
    let info = match s.clients[tok].tracking.as_ref() {
        None => TrackingInfo::default(),
        Some(t) => TrackingInfo {
            on: true,
            bcast: t.bcast,
            optin: t.optin,
            optout: t.optout,
            caching: t.caching,
            noloop: t.noloop,
            broken_redirect: t.broken_redirect,
            redirect: t.redirect,
            prefixes: &t.prefixes,
        },
    };
    info.write(r);
}
