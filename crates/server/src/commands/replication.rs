//! Replication commands: REPLICAOF/SLAVEOF, ROLE, WAIT, and the ones replicas send (PSYNC, SYNC,
//! REPLCONF). The machinery is in `crate::repl`.

use std::time::{Duration, Instant};

use tessera_protocol::Args;

use crate::dispatch::{Call, CmdError, CmdResult, REPLAY_CLIENT};
use crate::repl::primary::{Phase, WaitAcks};
use crate::server::Server;

fn is(a: &[u8], s: &str) -> bool {
    a.eq_ignore_ascii_case(s.as_bytes())
}

/// `REPLICAOF host port | NO ONE` (and SLAVEOF).
pub fn replicaof(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if is(args.get(1), "no") && is(args.get(2), "one") {
        if s.repl.is_replica() {
            s.promote();
            s.config.replicaof = None;
        }
        call.reply().ok();
        return Ok(());
    }
    let port: u16 = std::str::from_utf8(args.get(2))
        .ok()
        .and_then(|p| p.parse::<i64>().ok())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(CmdError::msg("ERR Invalid master port"))?;
    let host = String::from_utf8_lossy(args.get(1)).into_owned();
    if s.replicate_from(host.clone(), port) {
        s.config.replicaof = Some(format!("{host} {port}"));
        call.reply().ok();
    } else {
        call.reply()
            .simple("OK Already connected to specified master");
    }
    Ok(())
}

/// `ROLE`
pub fn role(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    if let Some(link) = &s.repl.link {
        let state = link.state();
        let offset = if link.is_up() {
            s.effects.offset as i64
        } else {
            -1
        };
        let (host, port) = (link.host.clone(), link.port);
        let mut r = call.reply();
        r.array(5);
        r.bulk(b"slave");
        r.bulk(host.as_bytes());
        r.int(i64::from(port));
        r.bulk(state.as_bytes());
        r.int(offset);
        return Ok(());
    }
    let replicas: Vec<(String, u16, u64)> = s
        .repl
        .replicas
        .iter()
        .filter_map(|&t| {
            let c = s.clients.get(t)?;
            let r = c.replica.as_ref()?;
            (r.phase == Phase::Online).then(|| (replica_ip(c), r.listening_port, r.ack_offset))
        })
        .collect();
    let offset = s.effects.offset;
    let mut r = call.reply();
    r.array(3);
    r.bulk(b"master");
    r.int(offset as i64);
    r.array(replicas.len());
    for (ip, port, off) in replicas {
        r.array(3);
        r.bulk(ip.as_bytes());
        r.bulk(port.to_string().as_bytes());
        r.bulk(off.to_string().as_bytes());
    }
    Ok(())
}

/// The address a replica is known by: the one it announced, else its peer address.
pub fn replica_ip(c: &crate::client::Client) -> String {
    c.replica
        .as_ref()
        .and_then(|r| r.announced_ip.clone())
        .unwrap_or_else(|| c.addr.ip().to_string())
}

/// `WAIT numreplicas timeout`
pub fn wait(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if s.repl.is_replica() {
        return Err(CmdError::msg(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let n = super::int_arg(args.get(1))?;
    let timeout = super::int_arg(args.get(2))?;
    if timeout < 0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    let offset = s.effects.offset;
    let acked = s.acked_replicas(offset);
    let tok = call.client;
    if acked as i64 >= n || tok == REPLAY_CLIENT || s.in_exec == Some(tok) {
        call.reply().int(acked as i64);
        return Ok(());
    }
    // A timeout too far away to represent waits for ever, as 0 does.
    let deadline = (timeout > 0)
        .then(|| Instant::now().checked_add(Duration::from_millis(timeout as u64)))
        .flatten();
    if let Some(c) = s.clients.get_mut(tok) {
        c.wait_acks = Some(WaitAcks {
            offset,
            replicas: n as u64,
            deadline,
        });
        s.repl.waiting.push(tok);
        s.repl.getack_due = true;
    }
    Ok(())
}

/// `PSYNC replid offset` and `SYNC`
pub fn psync(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let plain = is(args.get(0), "sync");
    let (id, off) = if plain {
        (&b"?"[..], &b"-1"[..])
    } else {
        (args.get(1), args.get(2))
    };
    match s.attach_replica(call.client, id, off, plain) {
        Ok(reply) => {
            call.out.extend_from_slice(&reply);
            Ok(())
        }
        Err(e) => Err(CmdError::msg(e)),
    }
}

/// `REPLCONF option value [option value ...]`
pub fn replconf(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let tok = call.client;
    let mut i = 1;
    while i + 1 < args.len() {
        let (opt, val) = (args.get(i), args.get(i + 1));
        if is(opt, "ack") {
            // No reply: acknowledgements arrive on the replica's stream link.
            if let Some(off) = std::str::from_utf8(val).ok().and_then(|v| v.parse().ok()) {
                s.replica_ack(tok, off);
            }
            return Ok(());
        }
        if is(opt, "getack") {
            // Only a primary's GETACK is answered (by the replica side).
            return Ok(());
        }
        let Some(c) = s.clients.get_mut(tok) else {
            return Ok(());
        };
        let r = c.replica.get_or_insert_with(Default::default);
        if is(opt, "listening-port") {
            r.listening_port = std::str::from_utf8(val)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(CmdError::NotInteger)?;
        } else if is(opt, "ip-address") {
            r.announced_ip = Some(String::from_utf8_lossy(val).into_owned());
        } else if is(opt, "capa") {
            if is(val, "eof") {
                r.capa_eof = true;
            } else if is(val, "psync2") {
                r.capa_psync2 = true;
            }
        } else if is(opt, "rdb-only") || is(opt, "rdb-filter-only") {
            // Accepted: the payload is the same.
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
        i += 2;
    }
    call.reply().ok();
    Ok(())
}
