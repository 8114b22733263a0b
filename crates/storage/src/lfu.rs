//! Redis's LFU counter (evict.c): a logarithmic 8-bit access counter and the minute it was last
//! decremented, packed into an entry's access field as `(minutes << 8) | counter`.

/// The counter of a new key, so it is not evicted before it had a chance to be used.
pub const INIT_VAL: u8 = 5;

/// The LFU clock: Unix minutes in 16 bits.
pub fn minutes(now_ms: i64) -> u32 {
    ((now_ms / 60_000) as u32) & 0xFFFF
}

/// The access field of a new key.
pub fn initial(now_ms: i64) -> u32 {
    (minutes(now_ms) << 8) | u32::from(INIT_VAL)
}

/// Minutes since `then`, with 16-bit wrap-around.
fn elapsed(now: u32, then: u32) -> u32 {
    if now >= then {
        now - then
    } else {
        65535 - then + now
    }
}

/// The counter after decay: one step per `decay_time` minutes without access.
pub fn decayed(access: u32, now_ms: i64, decay_time: u32) -> u8 {
    let then = access >> 8;
    let counter = access & 0xFF;
    let periods = elapsed(minutes(now_ms), then)
        .checked_div(decay_time)
        .unwrap_or(0);
    counter.saturating_sub(periods) as u8
}

/// The access field after one access: decay, then a logarithmic increment (the higher the
/// counter, the less likely it grows).
pub fn on_access(access: u32, now_ms: i64, log_factor: u32, decay_time: u32, r: f64) -> u32 {
    let mut counter = decayed(access, now_ms, decay_time);
    if counter < 255 {
        let base = f64::from(counter.saturating_sub(INIT_VAL));
        let p = 1.0 / (base * f64::from(log_factor) + 1.0);
        if r < p {
            counter += 1;
        }
    }
    (minutes(now_ms) << 8) | u32::from(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_grows_logarithmically_and_decays() {
        let now = 10 * 60_000;
        let mut a = initial(now);
        for _ in 0..100 {
            a = on_access(a, now, 10, 1, 0.0);
        }
        assert_eq!(a & 0xFF, 105, "r = 0 always increments");
        let b = on_access(initial(now), now, 10, 1, 0.99);
        assert_eq!(b & 0xFF, 6, "at the initial value every access counts");
        let c = on_access((minutes(now) << 8) | 100, now, 10, 1, 0.5);
        assert_eq!(c & 0xFF, 100, "high counters rarely grow");
        assert_eq!(decayed(a, now + 30 * 60_000, 1), 75);
        assert_eq!(decayed(a, now + 30 * 60_000, 0), 105);
    }
}
