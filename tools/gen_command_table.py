#!/usr/bin/env python3
"""Generate crates/protocol/src/command/generated.rs from Redis's command metadata
(crates/protocol/data/redis-commands.json, saved by tools/fetch_redis_commands.py).

Flag, ACL-category and key-spec-flag bits are numbered in the order Redis prints them, so the
COMMAND reply can be produced from the bitsets in Redis's own order.

usage: tools/gen_command_table.py > crates/protocol/src/command/generated.rs
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "crates", "protocol", "data", "redis-commands.json")


def unset(x):
    return x["set"] if isinstance(x, dict) and "set" in x else x


def unmap(x):
    return dict(x["map"])


def topo_order(lists):
    """Order names so that every list keeps its relative order (Redis prints flags in bit order)."""
    names, before = [], {}
    for lst in lists:
        for n in lst:
            if n not in before:
                before[n] = set()
                names.append(n)
        for i, a in enumerate(lst):
            for b in lst[i + 1:]:
                before[b].add(a)
    out, done = [], set()
    while len(out) < len(names):
        for n in names:
            if n not in done and before[n] <= done:
                out.append(n)
                done.add(n)
                break
        else:
            raise SystemExit("flag order has a cycle")
    return out


def rs(s):
    return json.dumps(s, ensure_ascii=False)


def opt(s):
    return "None" if s is None else "Some(%s)" % rs(s)


def ident(name):
    return name.upper().replace("-", "_").replace("@", "")


def strs(lst):
    return "&[%s]" % ", ".join(rs(x) for x in lst)


# Commands newer than the Redis release the JSON was fetched from, which Tessera implements:
# Redis 7.2's metadata for them, in the same shape as COMMAND / COMMAND DOCS replies.
EXTRA_SUBCOMMANDS = {
    "client": [
        (["client|setinfo", 4, {"set": ["noscript", "loading", "stale"]}, 0, 0, 0,
          {"set": ["@slow", "@connection"]}, {"set": ["request_policy:all_nodes", "response_policy:all_succeeded"]},
          {"set": []}, {"set": []}],
         {"map": [["summary", "Sets information specific to the client or connection."],
                  ["since", "7.2.0"], ["group", "connection"], ["complexity", "O(1)"],
                  ["arguments", [{"map": [["name", "attr"], ["type", "oneof"], ["arguments", [
                      {"map": [["name", "libname"], ["type", "string"], ["token", "LIB-NAME"]]},
                      {"map": [["name", "libver"], ["type", "string"], ["token", "LIB-VER"]]}]]]}]]]}),
        (["client|no-touch", 3, {"set": ["noscript", "loading", "stale"]}, 0, 0, 0,
          {"set": ["@slow", "@connection"]}, {"set": []}, {"set": []}, {"set": []}],
         {"map": [["summary", "Controls whether commands sent by the client affect the LRU/LFU of accessed keys."],
                  ["since", "7.2.0"], ["group", "connection"], ["complexity", "O(1)"],
                  ["arguments", [{"map": [["name", "enabled"], ["type", "oneof"], ["arguments", [
                      {"map": [["name", "on"], ["type", "pure-token"], ["token", "ON"]]},
                      {"map": [["name", "off"], ["type", "pure-token"], ["token", "OFF"]]}]]]}]]]}),
    ],
    "cluster": [
        (["cluster|myshardid", 2, {"set": ["stale"]}, 0, 0, 0, {"set": ["@slow"]},
          {"set": ["nondeterministic_output"]}, {"set": []}, {"set": []}],
         {"map": [["summary", "Returns the shard ID of a node."], ["since", "7.2.0"],
                  ["group", "cluster"], ["complexity", "O(1)"]]}),
    ],
}


def add_extras(info, docs):
    for parent, subs in EXTRA_SUBCOMMANDS.items():
        cmd = next(c for c in info if c[0] == parent)
        subs_info = unset(cmd[9])
        doc = docs[parent]["map"]
        subdocs = next(v for k, v in doc if k == "subcommands")["map"]
        for sub_info, sub_doc in subs:
            if not any(s[0] == sub_info[0] for s in subs_info):
                subs_info.append(sub_info)
                subdocs.append([sub_info[0], sub_doc])


def main():
    data = json.load(open(DATA))
    info = data["info"]
    docs = unmap(data["docs"])
    add_extras(info, data["docs"]["map"] and {k: v for k, v in data["docs"]["map"]})

    def all_cmds(cmds):
        for c in cmds:
            yield c
            yield from all_cmds(unset(c[9]))

    cmds = list(all_cmds(info))
    flag_order = topo_order([unset(c[2]) for c in cmds])
    acl_order = topo_order([unset(c[6]) for c in cmds])
    ks_lists = [unset(unmap(ks)["flags"]) for c in cmds for ks in unset(c[8])]
    ks_order = topo_order(ks_lists)

    def bits(names, order, module):
        if not names:
            return "0"
        return " | ".join("%s::%s" % (module, ident(n)) for n in sorted(names, key=order.index))

    def begin_search(bs):
        m = unmap(bs)
        spec = unmap(m["spec"])
        if m["type"] == "index":
            return "BeginSearch::Index(%d)" % spec["index"]
        if m["type"] == "keyword":
            return "BeginSearch::Keyword { keyword: %s, startfrom: %d }" % (
                rs(spec["keyword"]), spec["startfrom"])
        return "BeginSearch::Unknown"

    def find_keys(fk):
        m = unmap(fk)
        spec = unmap(m["spec"])
        if m["type"] == "range":
            return "FindKeys::Range { lastkey: %d, keystep: %d, limit: %d }" % (
                spec["lastkey"], spec["keystep"], spec["limit"])
        if m["type"] == "keynum":
            return "FindKeys::KeyNum { keynumidx: %d, firstkey: %d, keystep: %d }" % (
                spec["keynumidx"], spec["firstkey"], spec["keystep"])
        return "FindKeys::Unknown"

    def key_spec(ks):
        m = unmap(ks)
        return "KeySpec { notes: %s, flags: %s, begin_search: %s, find_keys: %s }" % (
            opt(m.get("notes")), bits(unset(m["flags"]), ks_order, "key_spec_flag"),
            begin_search(m["begin_search"]), find_keys(m["find_keys"]))

    def arg(a, ind):
        m = unmap(a)
        sub = m.get("arguments")
        return ("%sArg { name: %s, kind: %s, key_spec_index: %d, token: %s, since: %s, "
                "deprecated_since: %s, flags: %s, arguments: %s }") % (
            ind, rs(m["name"]), rs(m["type"]), m.get("key_spec_index", -1), opt(m.get("token")),
            opt(m.get("since")), opt(m.get("deprecated_since")), strs(unset(m.get("flags", []))),
            args(sub, ind + "    ") if sub else "&[]")

    def args(lst, ind):
        return "&[\n%s,\n%s]" % (",\n".join(arg(a, ind + "    ") for a in lst), ind)

    def doc(d, ind):
        hist = unset(d.get("history", []))
        return ("Doc { summary: %s, since: %s, group: %s, complexity: %s, doc_flags: %s, "
                "deprecated_since: %s, replaced_by: %s, history: &[%s], arguments: %s }") % (
            rs(d.get("summary", "")), rs(d.get("since", "")), rs(d.get("group", "")),
            opt(d.get("complexity")), strs(unset(d.get("doc_flags", []))),
            opt(d.get("deprecated_since")), opt(d.get("replaced_by")),
            ", ".join("(%s, %s)" % (rs(v), rs(t)) for v, t in hist),
            args(d["arguments"], ind) if d.get("arguments") else "&[]")

    def command(c, d, ind):
        name, arity, flags, first, last, step, acl, tips, specs, subs = c
        subs = unset(subs)
        subdocs = unmap(d["subcommands"]) if "subcommands" in d else {}
        sub_src = "&[]"
        if subs:
            sub_src = "&[\n%s\n%s]" % ("\n".join(
                command(s, unmap(subdocs[s[0]]), ind + "    ") + "," for s in subs), ind)
        return ("%sCommandSpec {\n%s    name: %s,\n%s    arity: %d,\n%s    flags: %s,\n"
                "%s    first_key: %d,\n%s    last_key: %d,\n%s    key_step: %d,\n"
                "%s    acl_categories: %s,\n%s    tips: %s,\n%s    key_specs: &[%s],\n"
                "%s    subcommands: %s,\n%s    doc: %s,\n%s}") % (
            ind, ind, rs(name), ind, arity, ind, bits(unset(flags), flag_order, "flag"),
            ind, first, ind, last, ind, step,
            ind, bits(unset(acl), acl_order, "acl"), ind, strs(unset(tips)),
            ind, ", ".join(key_spec(k) for k in unset(specs)),
            ind, sub_src, ind, doc(d, ind + "    "), ind)

    out = sys.stdout
    out.write("// @generated by tools/gen_command_table.py from data/redis-commands.json "
              "(Redis %s). Do not edit.\n" % data["redis_version"])
    out.write("#![allow(clippy::all)]\n\nuse super::spec::*;\n\n")
    for mod, order, ty in (("flag", flag_order, "u32"), ("acl", acl_order, "u32"),
                           ("key_spec_flag", ks_order, "u16")):
        out.write("/// Bits in the order Redis prints the names.\npub mod %s {\n" % mod)
        for i, n in enumerate(order):
            out.write("    pub const %s: %s = 1 << %d;\n" % (ident(n), ty, i))
        out.write("    /// Names, indexed by bit number.\n")
        out.write("    pub const NAMES: &[&str] = %s;\n}\n\n" % strs(order))
    ordered = sorted(info, key=lambda c: c[0])
    out.write("/// Every Redis %s command, sorted by name.\n" % data["redis_version"])
    out.write("pub static REDIS_COMMANDS: &[CommandSpec] = &[\n")
    for c in ordered:
        out.write(command(c, unmap(docs[c[0]]), "    ") + ",\n")
    out.write("];\n")


if __name__ == "__main__":
    main()
