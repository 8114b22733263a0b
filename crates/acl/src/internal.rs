//! The cluster's internal identity (`docs/CLUSTER.md`, "Internal connections"): how the
//! processes of a cluster database authenticate to its shards whatever the database's users
//! say, as Redis 8's `AUTH "internal connection" <secret>` does.
//!
//! The proxy, the shards' publish bus, replicas and the supervisor send
//! `AUTH "internal <role>" <secret>`. The names have a space, which no user name may have, so
//! they never collide with a database's users. The secret is derived from the control group's
//! admin token and the database's name: every process the control group starts has both, a
//! client has neither. The shard's client becomes the internal user (every command, key and
//! channel) and keeps the role, which decides how PUBLISH treats it.

use sha2::{Digest, Sha256};

/// Who is on the other end of an internal connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    /// A proxy's connection: its pattern subscriptions are made on every shard.
    Proxy,
    /// Another shard forwarding PUBLISH: delivered here, not forwarded again.
    Bus,
    /// A replica's replication link.
    Replica,
    /// The supervisor asking for INFO.
    Control,
}

impl Internal {
    pub const ALL: [Internal; 4] = [
        Internal::Proxy,
        Internal::Bus,
        Internal::Replica,
        Internal::Control,
    ];

    /// The name AUTH gives for this role.
    pub fn name(self) -> &'static str {
        match self {
            Internal::Proxy => "internal proxy",
            Internal::Bus => "internal bus",
            Internal::Replica => "internal replica",
            Internal::Control => "internal control",
        }
    }

    /// The role an AUTH user name asks for, if it is an internal one.
    pub fn from_name(name: &[u8]) -> Option<Internal> {
        Internal::ALL
            .into_iter()
            .find(|r| r.name().as_bytes() == name)
    }
}

/// The secret of database `database`'s internal connections, from the control group's admin
/// token (empty when the control group has none; then the internal identity is as open as the
/// control group's API is).
pub fn secret(token: &str, database: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tessera internal identity\0");
    h.update(database.as_bytes());
    h.update(b"\0");
    h.update(token.as_bytes());
    crate::to_hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_user_names_and_secrets_differ_by_database_and_token() {
        for r in Internal::ALL {
            assert!(crate::has_spaces(r.name().as_bytes()));
            assert_eq!(Internal::from_name(r.name().as_bytes()), Some(r));
        }
        assert_eq!(Internal::from_name(b"internal"), None);
        assert_eq!(secret("t", "db").len(), 64);
        assert_ne!(secret("t", "db"), secret("t", "db2"));
        assert_ne!(secret("t", "db"), secret("u", "db"));
        assert_eq!(secret("t", "db"), secret("t", "db"));
    }
}
