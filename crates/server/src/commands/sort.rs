//! SORT and SORT_RO, after Redis's sort.c: sort a list, set or sorted set numerically or
//! alphabetically, by the element or by external keys (`BY`), fetch external keys (`GET`), and
//! reply or store the result as a list.

use tessera_protocol::slot::pattern_hash_slot;
use tessera_protocol::{Args, key_hash_slot};
use tessera_storage::{Expiry, OpError, StrView, Value};

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, LIST};
use crate::server::Server;

struct SortOptions<'a> {
    by: Option<&'a [u8]>,
    gets: Vec<&'a [u8]>,
    limit: Option<(i64, i64)>,
    desc: bool,
    alpha: bool,
    store: Option<&'a [u8]>,
}

/// In cluster mode a BY or GET pattern must form keys in the sorted key's slot.
fn check_pattern(option: &str, pattern: &[u8], key: &[u8], cluster: bool) -> Result<(), CmdError> {
    if cluster && pattern.contains(&b'*') && pattern_hash_slot(pattern) != Some(key_hash_slot(key))
    {
        return Err(CmdError::msg(format!(
            "ERR {option} option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots."
        )));
    }
    Ok(())
}

fn parse_options<'a>(
    args: &Args<'a>,
    read_only: bool,
    cluster: bool,
) -> Result<SortOptions<'a>, CmdError> {
    let mut o = SortOptions {
        by: None,
        gets: Vec::new(),
        limit: None,
        desc: false,
        alpha: false,
        store: None,
    };
    let mut i = 2;
    while i < args.len() {
        let a = args.get(i);
        let left = args.len() - i - 1;
        if is(a, "asc") {
            o.desc = false;
        } else if is(a, "desc") {
            o.desc = true;
        } else if is(a, "alpha") {
            o.alpha = true;
        } else if is(a, "limit") && left >= 2 {
            o.limit = Some((int_arg(args.get(i + 1))?, int_arg(args.get(i + 2))?));
            i += 2;
        } else if is(a, "store") && left >= 1 && !read_only {
            o.store = Some(args.get(i + 1));
            i += 1;
        } else if is(a, "by") && left >= 1 {
            check_pattern("BY", args.get(i + 1), args.get(1), cluster)?;
            o.by = Some(args.get(i + 1));
            i += 1;
        } else if is(a, "get") && left >= 1 {
            check_pattern("GET", args.get(i + 1), args.get(1), cluster)?;
            o.gets.push(args.get(i + 1));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

fn view_bytes(v: StrView<'_>) -> Vec<u8> {
    let mut buf = itoa::Buffer::new();
    v.bytes(&mut buf).to_vec()
}

/// Redis's `lookupKeyByPattern`: the first `*` of `pattern` replaced by `subst`; a `->field`
/// suffix after the `*` reads a hash field. `#` alone is the element itself. Missing keys,
/// fields and keys of other types give `None`.
fn lookup_by_pattern(
    s: &mut Server,
    call: &Call<'_>,
    pattern: &[u8],
    subst: &[u8],
) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(subst.to_vec());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let after = &pattern[star + 1..];
    let (suffix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(p) if p + 2 < after.len() => (&after[..p], Some(&after[p + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + subst.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(subst);
    key.extend_from_slice(suffix);
    let entry = s.read_key(call, &key)?;
    match (entry.value(), field) {
        (Value::Hash(h), Some(f)) => h.get(f).map(<[u8]>::to_vec),
        (v, None) => v.as_str().map(view_bytes),
        _ => None,
    }
}

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC | DESC] [ALPHA]
/// [STORE destination]`, `SORT_RO` (without STORE)
pub fn sort(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let read_only = call.spec.name == "sort_ro";
    // BY and GET patterns read keys the command does not name: only for a user who may read
    // every key.
    let user = s
        .clients
        .get(call.client)
        .map_or(crate::acl::DEFAULT_USER, |c| c.user);
    if let Some(e) = s.acl.user(user).sort_refusal(call.spec, args) {
        return Err(CmdError::msg(e));
    }
    let o = parse_options(args, read_only, s.cluster.enabled)?;
    let key = args.get(1);
    // BY without `*` means "do not sort" (Redis's dontsort).
    let mut dontsort = o.by.is_some_and(|p| !p.contains(&b'*'));
    let mut alpha = o.alpha;
    let mut by = o.by.filter(|_| !dontsort);

    // The elements, in the source's own order.
    let (mut elements, ordered) = match s.read_key(call, key).map(|e| e.value()) {
        None => (Vec::new(), true),
        Some(Value::List(l)) => (l.0.iter().map(|e| e.as_bytes().to_vec()).collect(), true),
        Some(Value::Set(set)) => (set.iter().map(view_bytes).collect::<Vec<_>>(), false),
        Some(Value::ZSet(z)) => (
            z.iter().map(|e| e.member.as_bytes().to_vec()).collect(),
            true,
        ),
        Some(_) => return Err(OpError::WrongType.into()),
    };
    // A set has no order of its own: stored results are sorted so they are deterministic.
    if dontsort && !ordered && o.store.is_some() {
        dontsort = false;
        alpha = true;
        by = None;
    }

    let len = elements.len() as i64;
    let (mut start, mut end) = match o.limit {
        None => (0, len - 1),
        Some((offset, count)) => {
            let start = offset.max(0);
            let end = if count < 0 {
                len - 1
            } else {
                start + count - 1
            };
            (start, end)
        }
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);

    if dontsort {
        // Lists and sorted sets keep their order, reversed by DESC.
        if ordered && o.desc {
            elements.reverse();
        }
    } else {
        // Each element with its sort key: the BY value or the element itself.
        let mut keyed: Vec<(Vec<u8>, Option<Vec<u8>>, f64)> = Vec::with_capacity(elements.len());
        for e in elements {
            let cmp = match by {
                Some(p) => lookup_by_pattern(s, call, p, &e),
                None => Some(e.clone()),
            };
            let mut score = 0.0;
            if !alpha && let Some(v) = &cmp {
                score = super::zsets::strtod(v)
                    .filter(|f| !f.is_nan())
                    .ok_or_else(|| {
                        CmdError::msg("ERR One or more scores can't be converted into double")
                    })?;
            }
            keyed.push((e, cmp, score));
        }
        keyed.sort_by(|a, b| {
            let ord = if alpha {
                // A missing BY value sorts first.
                a.1.cmp(&b.1)
            } else {
                a.2.partial_cmp(&b.2)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.0.cmp(&b.0))
            };
            if o.desc { ord.reverse() } else { ord }
        });
        elements = keyed.into_iter().map(|k| k.0).collect();
    }

    let selected: Vec<Vec<u8>> = if end >= start && start >= 0 {
        elements
            .into_iter()
            .skip(start as usize)
            .take((end - start + 1) as usize)
            .collect()
    } else {
        Vec::new()
    };

    // The output: the elements, or for each element the value of each GET pattern.
    let mut output: Vec<Option<Vec<u8>>> = Vec::new();
    for e in selected {
        if o.gets.is_empty() {
            output.push(Some(e));
        } else {
            for p in &o.gets {
                output.push(lookup_by_pattern(s, call, p, &e));
            }
        }
    }

    match o.store {
        None => {
            let mut r = call.reply();
            r.array(output.len());
            for v in &output {
                r.bulk_opt(v.as_deref());
            }
        }
        Some(dst) => {
            let n = output.len();
            if n == 0 {
                if s.db.remove_live(dst, call.now).is_some() {
                    s.notify(GENERIC, "del", dst);
                }
            } else {
                let mut list = tessera_storage::List::default();
                for v in &output {
                    list.push(tessera_storage::End::Right, v.as_deref().unwrap_or(b""));
                }
                s.db.set(dst, Value::List(Box::new(list)), Expiry::Persist, call.now);
                s.notify(LIST, "sortstore", dst);
            }
            call.reply().int(n as i64);
        }
    }
    Ok(())
}
