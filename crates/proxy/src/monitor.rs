//! MONITOR through the proxy: a connection of the client's own to every shard's primary, put
//! in monitor mode; the client gets `+OK` once every shard has answered, then every shard's
//! feed as it comes. RESET (or leaving) closes those connections, which ends the feeds.

use crate::merge::{Gather, Merge};
use crate::worker::{Feed, Worker, write_command};

impl Worker {
    /// MONITOR.
    pub(crate) fn monitor(&mut self, key: usize) {
        if self.clients[key].monitoring {
            // Redis ignores MONITOR from a client already monitoring: no reply.
            return;
        }
        let addrs = match self.primary_addrs() {
            Ok(addrs) => addrs,
            Err(e) => return self.reply_error(key, e),
        };
        let mut feeds = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            match self.feed_backend(key, addr, Feed::Monitor) {
                Ok(b) => feeds.push(b),
                Err(e) => {
                    for b in feeds {
                        self.drop_private(key, b);
                    }
                    return self.reply_error(key, &e);
                }
            }
        }
        self.clients[key].monitoring = true;
        let part = self.expect_parts(key, Gather::new(Merge::AllSucceeded, feeds.len()));
        for (i, b) in feeds.into_iter().enumerate() {
            self.send(b, part(i), 0, |o| write_command(o, &[b"MONITOR"]));
        }
    }

    /// Ends the client's MONITOR (RESET): its feed connections are closed.
    pub(crate) fn stop_monitor(&mut self, key: usize) {
        if !std::mem::take(&mut self.clients[key].monitoring) {
            return;
        }
        for b in self.feed_backends(key, Feed::Monitor) {
            self.drop_private(key, b);
        }
    }
}
