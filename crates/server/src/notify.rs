//! Keyspace notifications (`notify-keyspace-events`), after Redis's notify.c.
//!
//! A command that changes a key calls [`Server::notify`] with the event's class and name. When
//! that class is enabled the event is queued, and the queue is published once the command has
//! run (`__keyspace@0__:<key>` with the event as message, `__keyevent@0__:<event>` with the key),
//! so the command's own reply comes first, as in Redis 7.2. Key creation (`new`) and expiry
//! (`expired`) are recorded by the keyspace itself and queued before the event that follows
//! them, which keeps Redis's order: `new` before `set`, `expired` before `keymiss`.
//! With notifications off a call costs one test of a flag word.

use crate::server::Server;

pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 13;
pub const NEW: u32 = 1 << 14;
/// The classes that signal a modification of the key (all but key misses).
pub const MODIFIED: u32 = ALL;
/// The `A` alias: every class but key misses and new keys.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

const CLASSES: [(char, u32); 11] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
    ('n', NEW),
];

/// Parses a `notify-keyspace-events` value; `None` for a character Redis does not know.
pub fn parse(s: &str) -> Option<u32> {
    let mut flags = 0;
    for c in s.chars() {
        flags |= match c {
            'A' => ALL,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            'm' => KEY_MISS,
            _ => CLASSES.iter().find(|(ch, _)| *ch == c)?.1,
        };
    }
    Some(flags)
}

/// The canonical text of `flags`, as `CONFIG GET` prints it (Redis's
/// `keyspaceEventsFlagsToString`, which folds `n` into `A`).
pub fn format(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (c, f) in CLASSES {
            if flags & f != 0 {
                s.push(c);
            }
        }
    }
    for (c, f) in [('K', KEYSPACE), ('E', KEYEVENT), ('m', KEY_MISS)] {
        if flags & f != 0 {
            s.push(c);
        }
    }
    s
}

/// The classes that produce messages: none unless `K` or `E` is set.
pub fn effective(flags: u32) -> u32 {
    if flags & (KEYSPACE | KEYEVENT) == 0 {
        0
    } else {
        flags
    }
}

/// Events waiting to be published.
#[derive(Default)]
pub struct Pending {
    pub(crate) events: Vec<(&'static str, Vec<u8>)>,
}

impl Server {
    /// Signals event `event` of class `class` on `key`: queues it when that class is enabled,
    /// and invalidates the WATCHes of the key when it is a modification.
    #[inline]
    pub fn notify(&mut self, class: u32, event: &'static str, key: &[u8]) {
        if class & MODIFIED != 0 {
            // Redis's `server.dirty`: the changes since the last save, and the signal that the
            // command has effects to record.
            self.dirty += 1;
        }
        if self.notify_gate & class != 0 {
            self.notify_slow(class, event, key);
        }
    }

    #[cold]
    fn notify_slow(&mut self, class: u32, event: &'static str, key: &[u8]) {
        if class & MODIFIED != 0 {
            self.signal_modified(key);
        }
        if self.notify_flags & class != 0 {
            self.collect_keyspace_events();
            self.events.events.push((event, key.to_vec()));
        }
    }

    /// Moves the keys the keyspace created or expired into the queue (and expired keys into
    /// WATCH invalidations).
    fn collect_keyspace_events(&mut self) {
        self.drain_expired_keys();
        if self.db.has_new_log() {
            for key in self.db.take_new() {
                self.events.events.push(("new", key.as_bytes().to_vec()));
            }
        }
    }

    /// Sets which classes are published (after `CONFIG SET notify-keyspace-events`), and what
    /// the keyspace records for them.
    pub(crate) fn apply_notify_config(&mut self, flags: u32) {
        self.notify_flags = effective(flags);
        self.db.log_new = self.notify_flags & NEW != 0;
        self.update_expired_logging();
    }

    /// Publishes the queued events. `caller` is the client whose command caused them, writing to
    /// `out` (`usize::MAX` outside a command).
    pub(crate) fn publish_events(&mut self, caller: usize, out: &mut Vec<u8>) {
        if self.notify_flags == 0 {
            return;
        }
        self.collect_keyspace_events();
        if self.events.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events.events);
        let mut channel = Vec::new();
        for (event, key) in &events {
            if self.notify_flags & KEYSPACE != 0 {
                channel.clear();
                channel.extend_from_slice(b"__keyspace@0__:");
                channel.extend_from_slice(key);
                self.publish_message(caller, out, &channel, event.as_bytes());
            }
            if self.notify_flags & KEYEVENT != 0 {
                channel.clear();
                channel.extend_from_slice(b"__keyevent@0__:");
                channel.extend_from_slice(event.as_bytes());
                self.publish_message(caller, out, &channel, key);
            }
        }
        let mut events = events;
        events.clear();
        if self.events.events.is_empty() {
            self.events.events = events;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_redis() {
        let f = |s| format(parse(s).unwrap());
        assert_eq!(f("KEAnm"), "AKEm");
        assert_eq!(f("nm"), "nm");
        assert_eq!(f("En"), "nE");
        assert_eq!(f("Kl"), "lK");
        assert_eq!(f("dtexzhsl$gKE"), "AKE");
        assert_eq!(f(""), "");
        assert!(parse("Q").is_none());
    }

    #[test]
    fn nothing_is_published_without_k_or_e() {
        assert_eq!(effective(parse("A").unwrap()), 0);
        assert_ne!(effective(parse("Eg").unwrap()), 0);
    }
}
