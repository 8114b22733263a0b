//! CLUSTER, ASKING, READONLY and READWRITE (issue 8): Redis Cluster's replies, made from the
//! topology the control group gave this shard (`crate::cluster`).

use tessera_protocol::cluster::Topology;
use tessera_protocol::{Args, key_hash_slot};

use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::Server;

const DISABLED: &str = "ERR This instance has cluster support disabled";

fn enabled(s: &Server) -> Result<(), CmdError> {
    if s.cluster.enabled {
        Ok(())
    } else {
        Err(CmdError::msg(DISABLED))
    }
}

/// A slot argument: Redis's `getSlotOrReply` texts.
fn slot_arg(arg: &[u8]) -> Result<u16, CmdError> {
    match tessera_protocol::num::parse_i64(arg) {
        Some(n) if (0..tessera_protocol::SLOTS as i64).contains(&n) => Ok(n as u16),
        _ => Err(CmdError::msg("ERR Invalid or out of range slot")),
    }
}

pub fn cluster(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    enabled(s)?;
    let sub = String::from_utf8_lossy(args.get(1)).to_ascii_lowercase();
    if sub == "help" {
        let lines = [
            "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "INFO",
            "    Return information about the cluster.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
            "MYID",
            "    Return the node id.",
            "MYSHARDID",
            "    Return the node's shard id.",
            "NODES",
            "    Return cluster configuration seen by node. Output format:",
            "    <id> <ip:port@bus-port[,hostname]> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
            "SHARDS",
            "    Return information about slot range mappings and the nodes associated with them.",
            "SLOTS",
            "    Return information about slots range mappings. Each range is made of:",
            "    start, end, master and replicas IP addresses, ports and ids",
            "HELP",
            "    Print this help.",
        ];
        let mut r = call.reply();
        r.array(lines.len());
        for l in lines {
            r.simple(l);
        }
        return Ok(());
    }
    match sub.as_str() {
        "keyslot" => {
            call.reply().int(i64::from(key_hash_slot(args.get(2))));
        }
        "countkeysinslot" => {
            let slot = slot_arg(args.get(2))?;
            call.reply().int(s.db.slot_len(slot) as i64);
        }
        "getkeysinslot" => {
            let slot = slot_arg(args.get(2))?;
            let count = match tessera_protocol::num::parse_i64(args.get(3)) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(CmdError::msg("ERR Invalid number of keys")),
            };
            let keys = s.db.slot_keys(slot, count);
            let mut r = call.reply();
            r.array(keys.len());
            for k in &keys {
                r.bulk(k.as_bytes());
            }
        }
        "myid" => match s.cluster.myself() {
            Some((_, node)) => call.reply().bulk(node.id.as_bytes()),
            None => {
                return Err(CmdError::msg(
                    "ERR The cluster configuration has not reached this node yet",
                ));
            }
        },
        "myshardid" => match s.cluster.myself() {
            Some((shard, _)) => call.reply().bulk(shard.shard_id.as_bytes()),
            None => {
                return Err(CmdError::msg(
                    "ERR The cluster configuration has not reached this node yet",
                ));
            }
        },
        "slots" => match &s.cluster.topology {
            Some(t) => t.write_slots(&mut call.reply()),
            None => call.reply().array(0),
        },
        "shards" => match &s.cluster.topology {
            Some(t) => {
                let mine = s.cluster.myself().map(|(_, n)| n.id.clone());
                let offset = s.effects.offset as i64;
                t.write_shards(&mut call.reply(), |n| {
                    if Some(&n.id) == mine.as_ref() {
                        offset
                    } else {
                        0
                    }
                });
            }
            None => call.reply().array(0),
        },
        "nodes" => {
            let text = match (&s.cluster.topology, s.cluster.myself()) {
                (Some(t), me) => t.nodes_text(me.map(|(_, n)| n.id.as_str())),
                (None, _) => String::new(),
            };
            call.reply().verbatim("txt", text.as_bytes());
        }
        "info" => {
            let text = cluster_info(s);
            call.reply().verbatim("txt", text.as_bytes());
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                String::from_utf8_lossy(args.get(1))
            )));
        }
    }
    Ok(())
}

/// `CLUSTER INFO`, with Redis Cluster's fields.
fn cluster_info(s: &Server) -> String {
    match &s.cluster.topology {
        Some(t) => t.info_text(s.cluster.me.is_some()),
        None => Topology::new(0, "", Vec::new()).info_text(false),
    }
}

pub fn asking(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    enabled(s)?;
    s.clients[call.client].asking = true;
    call.reply().ok();
    Ok(())
}

pub fn readonly(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    enabled(s)?;
    s.clients[call.client].readonly = true;
    call.reply().ok();
    Ok(())
}

pub fn readwrite(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    enabled(s)?;
    s.clients[call.client].readonly = false;
    call.reply().ok();
    Ok(())
}
