//! Geo commands on sorted sets, after Redis's geo.c and geohash.c: a position is stored as the
//! member's score, the 52-bit interleaved geohash of its longitude and latitude, so positions,
//! hashes and distances come out digit for digit as Redis's.
//!
//! Searches (GEOSEARCH, GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and the _RO forms)
//! visit the geohash cell of the centre and its 8 neighbours at a precision chosen from the
//! search radius, each cell a score range of the sorted set, in Redis's order and with its
//! edge adjustments (geohash_helper.c), then filter by Redis's exact distance test. So they
//! find what Redis finds, in the same order, in O(log n + matches near the centre).

use tessera_protocol::{Args, num};
use tessera_storage::{Expiry, Value, ZSet};

use super::is;
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, ZSET as ZSET_EVENTS};
use crate::server::Server;

const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
const STEP: u32 = 26;
const EARTH_RADIUS_M: f64 = 6372797.560856;

/// Spreads the 32 bits of `x` over the even bits of a u64.
fn spread(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `x`, packed.
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) as u32
}

/// Redis's `geohashEncode`: latitude bits on the even positions, longitude on the odd ones.
fn encode(lon: f64, lat: f64, lat_min: f64, lat_max: f64) -> u64 {
    let scale = (1u64 << STEP) as f64;
    let lat_offset = (lat - lat_min) / (lat_max - lat_min) * scale;
    let lon_offset = (lon - LON_MIN) / (LON_MAX - LON_MIN) * scale;
    spread(lat_offset as u32) | (spread(lon_offset as u32) << 1)
}

/// Redis's `geohashDecode` + `geohashDecodeAreaToLongLat`: the centre of the hash's cell.
fn decode(bits: u64) -> (f64, f64) {
    let (ilat, ilon) = (squash(bits), squash(bits >> 1));
    let scale = (1u64 << STEP) as f64;
    let lat_scale = LAT_MAX - LAT_MIN;
    let lon_scale = LON_MAX - LON_MIN;
    let lat_lo = LAT_MIN + (f64::from(ilat) * 1.0 / scale) * lat_scale;
    let lat_hi = LAT_MIN + ((f64::from(ilat) + 1.0) * 1.0 / scale) * lat_scale;
    let lon_lo = LON_MIN + (f64::from(ilon) * 1.0 / scale) * lon_scale;
    let lon_hi = LON_MIN + ((f64::from(ilon) + 1.0) * 1.0 / scale) * lon_scale;
    let lon = ((lon_lo + lon_hi) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((lat_lo + lat_hi) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

fn deg_rad(d: f64) -> f64 {
    d * (std::f64::consts::PI / 180.0)
}

/// Redis's `geohashGetDistance` (haversine on Redis's earth radius), in meters.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs();
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// Meters per unit (`m`, `km`, `ft`, `mi`).
fn unit(a: &[u8]) -> Result<f64, CmdError> {
    Ok(match a {
        a if is(a, "m") => 1.0,
        a if is(a, "km") => 1000.0,
        a if is(a, "ft") => 0.3048,
        a if is(a, "mi") => 1609.34,
        _ => {
            return Err(CmdError::msg(
                "ERR unsupported unit provided. please use M, KM, FT, MI",
            ));
        }
    })
}

/// Redis's `fixedpoint_d2string(.., 4)`: rounded to 4 decimals, half to even.
fn fixed4(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let v = (d * 10000.0).round_ties_even() as i64;
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10000, a % 10000)
}

/// Redis's `ld2string(.., LD_STR_HUMAN)`: 17 decimals, trailing zeros removed.
fn human(d: f64) -> String {
    let mut s = format!("{d:.17}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" { "0".into() } else { s }
}

fn float_arg(a: &[u8]) -> Result<f64, CmdError> {
    num::parse_f64(a)
        .filter(|f| !f.is_nan())
        .ok_or_else(|| CmdError::msg("ERR value is not a valid float"))
}

/// `GEOADD key [NX | XX] [CH] longitude latitude member [...]`: ZADD with geohash scores.
pub fn geoadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut at = 2;
    let (mut nx, mut xx) = (false, false);
    while at < args.len() {
        let a = args.get(at);
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if !is(a, "ch") {
            break;
        }
        at += 1;
    }
    if !(args.len() - at).is_multiple_of(3) || (nx && xx) || at == args.len() {
        return Err(CmdError::Syntax);
    }
    // ZADD key [options] score member ...
    let mut parts: Vec<Vec<u8>> = (0..at).map(|i| args.get(i).to_vec()).collect();
    parts[0] = b"zadd".to_vec();
    for i in (at..args.len()).step_by(3) {
        let (lon, lat) = (float_arg(args.get(i))?, float_arg(args.get(i + 1))?);
        if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
            return Err(CmdError::msg(format!(
                "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
            )));
        }
        parts.push(encode(lon, lat, LAT_MIN, LAT_MAX).to_string().into_bytes());
        parts.push(args.get(i + 2).to_vec());
    }
    let mut buf = Vec::new();
    let mut spans = Vec::with_capacity(parts.len());
    for p in &parts {
        let start = buf.len() as u32;
        buf.extend_from_slice(p);
        spans.push((start, buf.len() as u32));
    }
    super::zsets::zadd(s, call, &Args::from_parts(&buf, &spans))
}

/// The geohash bits of each of `members` (`None` when missing).
fn positions(
    s: &mut Server,
    call: &Call<'_>,
    key: &[u8],
    members: impl Iterator<Item = Vec<u8>>,
) -> Result<Vec<Option<u64>>, CmdError> {
    let z: Option<&ZSet> = s.read_as::<ZSet>(call, key)?;
    Ok(members
        .map(|m| z.and_then(|z| z.score(&m)).map(|sc| sc as u64))
        .collect())
}

/// `GEOPOS key [member ...]`
pub fn geopos(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let found = positions(s, call, args.get(1), args.iter_from(2).map(<[u8]>::to_vec))?;
    let mut r = call.reply();
    r.array(found.len());
    for bits in found {
        match bits {
            None => r.null_array(),
            Some(bits) => {
                let (lon, lat) = decode(bits);
                r.array(2);
                r.double_text(human(lon).as_bytes());
                r.double_text(human(lat).as_bytes());
            }
        }
    }
    Ok(())
}

/// `GEODIST key member1 member2 [M | KM | FT | MI]`
pub fn geodist(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let to_meters = match args.len() {
        4 => 1.0,
        5 => unit(args.get(4))?,
        _ => return Err(CmdError::Syntax),
    };
    let found = positions(
        s,
        call,
        args.get(1),
        [args.get(2).to_vec(), args.get(3).to_vec()].into_iter(),
    )?;
    match (found[0], found[1]) {
        (Some(a), Some(b)) => {
            let (lon1, lat1) = decode(a);
            let (lon2, lat2) = decode(b);
            let d = distance(lon1, lat1, lon2, lat2) / to_meters;
            call.reply().bulk(fixed4(d).as_bytes());
        }
        _ => call.reply().null(),
    }
    Ok(())
}

/// `GEOHASH key [member ...]`: standard 11-character geohashes (re-encoded on latitudes
/// -90..90, as Redis does).
pub fn geohash(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    const ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let found = positions(s, call, args.get(1), args.iter_from(2).map(<[u8]>::to_vec))?;
    let mut r = call.reply();
    r.array(found.len());
    for bits in found {
        match bits {
            None => r.null(),
            Some(bits) => {
                let (lon, lat) = decode(bits);
                let standard = encode(lon, lat, -90.0, 90.0);
                let mut text = [0u8; 11];
                for (i, c) in text.iter_mut().enumerate() {
                    let idx = if i == 10 {
                        0
                    } else {
                        (standard >> (52 - (i + 1) * 5)) & 0x1f
                    };
                    *c = ALPHABET[idx as usize];
                }
                r.bulk(&text);
            }
        }
    }
    Ok(())
}

/// Where a search is centred and what it covers (distances in meters).
#[derive(Clone, Copy)]
enum Shape {
    Radius(f64),
    Box(f64, f64),
}

/// Redis's `geohashEncode` at `step` bits per coordinate.
fn encode_step(lon: f64, lat: f64, step: u32) -> u64 {
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - LAT_MIN) / (LAT_MAX - LAT_MIN) * scale;
    let lon_offset = (lon - LON_MIN) / (LON_MAX - LON_MIN) * scale;
    spread(lat_offset as u32) | (spread(lon_offset as u32) << 1)
}

/// A cell: its hash bits and step; `(0, 0)` is "no cell" (Redis's `GZERO`).
type Cell = (u64, u32);

/// The bounds of a cell: (lon min, lon max, lat min, lat max).
fn cell_area((bits, step): Cell) -> (f64, f64, f64, f64) {
    let (ilat, ilon) = (squash(bits), squash(bits >> 1));
    let scale = (1u64 << step) as f64;
    let lat = |i: u32| LAT_MIN + (f64::from(i) * 1.0 / scale) * (LAT_MAX - LAT_MIN);
    let lon = |i: u32| LON_MIN + (f64::from(i) * 1.0 / scale) * (LON_MAX - LON_MIN);
    (
        lon(ilon),
        lon(ilon.wrapping_add(1)),
        lat(ilat),
        lat(ilat.wrapping_add(1)),
    )
}

/// Redis's `geohash_move_x` / `geohash_move_y`: the neighbouring cell east/west (`odd`
/// bits, longitude) or north/south (even bits, latitude).
fn move_cell((bits, step): Cell, d: i8, lon_axis: bool) -> Cell {
    if d == 0 {
        return (bits, step);
    }
    let (mine, other) = if lon_axis {
        (0xAAAA_AAAA_AAAA_AAAAu64, 0x5555_5555_5555_5555u64)
    } else {
        (0x5555_5555_5555_5555u64, 0xAAAA_AAAA_AAAA_AAAAu64)
    };
    let shift = 64 - step * 2;
    let mut v = bits & mine;
    let keep = bits & other;
    let zz = other >> shift;
    if d > 0 {
        v = v.wrapping_add(zz + 1);
    } else {
        v |= zz;
        v = v.wrapping_sub(zz + 1);
    }
    v &= mine >> shift;
    (v | keep, step)
}

/// Redis's `geohashEstimateStepsByRadius`.
fn steps_for_radius(mut range_m: f64, lat: f64) -> u32 {
    if range_m == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_m < 20037726.37 {
        range_m *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u32
}

/// The score ranges to scan, in Redis's order (centre, N, S, E, W, NE, NW, SE, SW), as
/// `geohashCalculateAreasByShapeWGS84` and `membersOfAllNeighbors` choose them.
fn search_ranges(center: (f64, f64), shape: Shape) -> Vec<(u64, u64)> {
    let (lon, lat) = center;
    let (half_h, half_w, radius) = match shape {
        Shape::Radius(r) => (r, r, r),
        Shape::Box(w, h) => (
            h / 2.0,
            w / 2.0,
            ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
        ),
    };
    // geohashBoundingBox
    let rad_deg = |r: f64| r / (std::f64::consts::PI / 180.0);
    let lat_delta = rad_deg(half_h / EARTH_RADIUS_M);
    let lon_delta_top = rad_deg(half_w / EARTH_RADIUS_M / deg_rad(lat + lat_delta).cos());
    let lon_delta_bottom = rad_deg(half_w / EARTH_RADIUS_M / deg_rad(lat - lat_delta).cos());
    let lon_delta = if lat < 0.0 {
        lon_delta_bottom
    } else {
        lon_delta_top
    };
    let (min_lon, max_lon) = (lon - lon_delta, lon + lon_delta);
    let (min_lat, max_lat) = (lat - lat_delta, lat + lat_delta);

    let neighbours = |c: Cell| -> [Cell; 8] {
        let at = |dx: i8, dy: i8| move_cell(move_cell(c, dx, true), dy, false);
        // north, south, east, west, north-east, north-west, south-east, south-west
        [
            at(0, 1),
            at(0, -1),
            at(1, 0),
            at(-1, 0),
            at(1, 1),
            at(-1, 1),
            at(1, -1),
            at(-1, -1),
        ]
    };
    let mut step = steps_for_radius(radius, lat);
    let mut cell = (encode_step(lon, lat, step), step);
    let mut around = neighbours(cell);
    let (n, so, e, w) = (
        cell_area(around[0]),
        cell_area(around[1]),
        cell_area(around[2]),
        cell_area(around[3]),
    );
    let decrease = n.3 < max_lat || so.2 > min_lat || e.1 < max_lon || w.0 > min_lon;
    if step > 1 && decrease {
        step -= 1;
        cell = (encode_step(lon, lat, step), step);
        around = neighbours(cell);
    }
    let area = cell_area(cell);
    if step >= 2 {
        const NONE: Cell = (0, 0);
        if area.2 < min_lat {
            around[1] = NONE;
            around[7] = NONE;
            around[6] = NONE;
        }
        if area.3 > max_lat {
            around[0] = NONE;
            around[4] = NONE;
            around[5] = NONE;
        }
        if area.0 < min_lon {
            around[3] = NONE;
            around[7] = NONE;
            around[5] = NONE;
        }
        if area.1 > max_lon {
            around[2] = NONE;
            around[6] = NONE;
            around[4] = NONE;
        }
    }
    let cells: Vec<Cell> = std::iter::once(cell).chain(around).collect();
    let mut ranges = Vec::with_capacity(9);
    let mut last: usize = 0;
    for (i, &c) in cells.iter().enumerate() {
        if c == (0, 0) {
            continue;
        }
        // Redis skips a cell equal to the last one processed (never comparing with the centre).
        if last != 0 && c == cells[last] {
            continue;
        }
        let shift = 52 - c.1 * 2;
        ranges.push((c.0 << shift, (c.0 + 1) << shift));
        last = i;
    }
    ranges
}

/// A distance argument in `unit`: (meters, meters per unit).
fn distance_arg(value: &[u8], u: &[u8], what: &str) -> Result<(f64, f64), CmdError> {
    let v = float_arg(value)?;
    if v < 0.0 {
        return Err(CmdError::msg(format!("ERR {what} cannot be negative")));
    }
    let to_m = unit(u)?;
    Ok((v * to_m, to_m))
}

fn lonlat_arg(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), CmdError> {
    let (lon, lat) = (float_arg(lon)?, float_arg(lat)?);
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(CmdError::msg(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// The sorted set at `key`, read without counting a hit or miss (already counted).
fn stored<'s>(s: &'s mut Server, key: &[u8], now: i64) -> Option<&'s ZSet> {
    match s.db.get(key, now).map(|e| e.value()) {
        Some(Value::ZSet(z)) => Some(&**z),
        _ => None,
    }
}

/// `GEOSEARCH`, `GEOSEARCHSTORE`, `GEORADIUS[_RO]`, `GEORADIUSBYMEMBER[_RO]`: Redis's
/// `georadiusGeneric`, with its argument order, errors and replies.
pub fn search(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let geosearch = name.starts_with("geosearch");
    let searchstore = name == "geosearchstore";
    let no_store = name.ends_with("_ro") || name == "geosearch";
    let by_member = name.starts_with("georadiusbymember");
    let src = if searchstore {
        args.get(2)
    } else {
        args.get(1)
    };
    let mut store: Option<&[u8]> = if searchstore { Some(args.get(1)) } else { None };
    let mut storedist = false;

    // One counted lookup (hit/miss, type check); later reads go to the keyspace directly.
    let exists = s.read_as::<ZSet>(call, src)?.is_some();
    let now = call.now;
    let member_pos = |s: &mut Server, m: &[u8]| -> Result<(f64, f64), CmdError> {
        stored(s, src, now)
            .and_then(|z| z.score(m))
            .map(|sc| decode(sc as u64))
            .ok_or_else(|| CmdError::msg("ERR could not decode requested zset member"))
    };
    let mut center = (0.0, 0.0);
    let mut shape = Shape::Radius(0.0);
    let mut to_m = 1.0;
    let base = if !geosearch && !by_member {
        center = lonlat_arg(args.get(2), args.get(3))?;
        let (r, c) = distance_arg(args.get(4), args.get(5), "radius")?;
        (shape, to_m) = (Shape::Radius(r), c);
        6
    } else if by_member {
        if exists {
            center = member_pos(s, args.get(2))?;
            let (r, c) = distance_arg(args.get(3), args.get(4), "radius")?;
            (shape, to_m) = (Shape::Radius(r), c);
        }
        5
    } else if searchstore {
        3
    } else {
        2
    };

    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort: Option<bool> = None; // Some(true) = DESC
    let mut count: i64 = 0;
    let remaining = args.len().saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let at = base + i;
        let a = args.get(at);
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            sort = Some(false);
        } else if is(a, "desc") {
            sort = Some(true);
        } else if is(a, "count") && i + 1 < remaining {
            count = super::int_arg(args.get(at + 1))?;
            if count <= 0 {
                return Err(CmdError::msg("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist"))
            && i + 1 < remaining
            && !no_store
            && !geosearch
        {
            store = Some(args.get(at + 1));
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && searchstore {
            storedist = true;
        } else if is(a, "frommember") && i + 1 < remaining && geosearch && !fromloc {
            if exists {
                center = member_pos(s, args.get(at + 1))?;
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && i + 2 < remaining && geosearch && !frommember {
            center = lonlat_arg(args.get(at + 1), args.get(at + 2))?;
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && i + 2 < remaining && geosearch && !bybox {
            let (r, c) = distance_arg(args.get(at + 1), args.get(at + 2), "radius")?;
            (shape, to_m) = (Shape::Radius(r), c);
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && i + 3 < remaining && geosearch && !byradius {
            let (w, h) = (float_arg(args.get(at + 1))?, float_arg(args.get(at + 2))?);
            if w < 0.0 || h < 0.0 {
                return Err(CmdError::msg("ERR height or width cannot be negative"));
            }
            to_m = unit(args.get(at + 3))?;
            shape = Shape::Box(w * to_m, h * to_m);
            bybox = true;
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        let what = if searchstore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(CmdError::msg(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    if geosearch && !(frommember || fromloc) {
        return Err(CmdError::msg(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {}",
            String::from_utf8_lossy(args.get(0))
        )));
    }
    if geosearch && !(byradius || bybox) {
        return Err(CmdError::msg(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {}",
            String::from_utf8_lossy(args.get(0))
        )));
    }
    if any && count == 0 {
        return Err(CmdError::msg(
            "ERR the ANY argument requires COUNT argument",
        ));
    }
    let Some(z) = stored(s, src, now) else {
        match store {
            Some(dst) => {
                if s.db.remove_live(dst, call.now).is_some() {
                    s.notify(GENERIC, "del", dst);
                }
                call.reply().int(0);
            }
            None => call.reply().array(0),
        }
        return Ok(());
    };
    if count != 0 && sort.is_none() && !any {
        sort = Some(false);
    }

    // (member, score, distance in meters, lon, lat)
    let mut found: Vec<(Vec<u8>, f64, f64, f64, f64)> = Vec::new();
    let candidates = search_ranges(center, shape)
        .into_iter()
        .flat_map(|(min, max)| {
            let start = z.count_below(min as f64, false);
            z.range(start, z.len())
                .take_while(move |e| e.score < max as f64)
        });
    for e in candidates {
        let (lon, lat) = decode(e.score as u64);
        let d = match shape {
            Shape::Radius(r) => {
                let d = distance(center.0, center.1, lon, lat);
                if d > r {
                    continue;
                }
                d
            }
            Shape::Box(w, h) => {
                if EARTH_RADIUS_M * (deg_rad(center.1) - deg_rad(lat)).abs() > h / 2.0
                    || distance(lon, lat, center.0, lat) > w / 2.0
                {
                    continue;
                }
                distance(center.0, center.1, lon, lat)
            }
        };
        found.push((e.member.as_bytes().to_vec(), e.score, d, lon, lat));
        if any && found.len() as i64 >= count {
            break;
        }
    }
    if let Some(desc) = sort {
        found.sort_by(|a, b| {
            let o = a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal);
            if desc { o.reverse() } else { o }
        });
    }
    if count > 0 {
        found.truncate(count as usize);
    }

    match store {
        None => {
            let options = usize::from(withdist) + usize::from(withhash) + usize::from(withcoord);
            let mut r = call.reply();
            r.array(found.len());
            for (m, score, d, lon, lat) in &found {
                if options > 0 {
                    r.array(options + 1);
                }
                r.bulk(m);
                if withdist {
                    r.bulk(fixed4(d / to_m).as_bytes());
                }
                if withhash {
                    r.int(*score as i64);
                }
                if withcoord {
                    r.array(2);
                    r.double_text(human(*lon).as_bytes());
                    r.double_text(human(*lat).as_bytes());
                }
            }
        }
        Some(dst) => {
            let n = found.len();
            if n == 0 {
                if s.db.remove_live(dst, call.now).is_some() {
                    s.notify(GENERIC, "del", dst);
                }
            } else {
                let limits = s.db.limits.zset();
                let mut out = ZSet::new();
                for (m, score, d, _, _) in &found {
                    out.set(if storedist { d / to_m } else { *score }, m, &limits);
                }
                s.db.set(dst, Value::ZSet(Box::new(out)), Expiry::Persist, call.now);
                let event = if geosearch {
                    "geosearchstore"
                } else {
                    "georadiusstore"
                };
                s.notify(ZSET_EVENTS, event, dst);
            }
            call.reply().int(n as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_within_a_cell() {
        let bits = encode(13.361389, 38.115556, LAT_MIN, LAT_MAX);
        let (lon, lat) = decode(bits);
        assert!((lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5);
        assert_eq!(squash(spread(0xDEAD_BEEF)), 0xDEAD_BEEF);
    }

    #[test]
    fn formats_as_redis() {
        assert_eq!(fixed4(166274.15156960033), "166274.1516");
        assert_eq!(fixed4(0.0), "0.0000");
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
    }
}
