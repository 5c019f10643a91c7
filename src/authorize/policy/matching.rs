//! The value matchers conditions and elements use: `*`/`?` wildcards, CIDR
//! blocks and ISO 8601 dates.

use std::net::IpAddr;

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (`/` included) and `?` exactly one.
pub(crate) fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if ignore_case {
            a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    };
    // Greedy scan with one backtrack point: the last `*` seen.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || same(p[pi], t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An address block: `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) if !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()) => {
                bits.parse::<u8>().ok().filter(|&b| b <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Cidr { network, bits })
    }

    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        // A client on an IPv6 socket may arrive as ::ffff:a.b.c.d.
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Seconds since the Unix epoch of `2030-01-01`, `2030-01-01T12:00:00Z`
/// (fractional seconds allowed, UTC only) or a plain epoch number.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = digits(parts.next()?, 4)?;
    let month: i64 = digits(parts.next()?, 2)?;
    let day: i64 = digits(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let time = time.strip_suffix('Z')?;
        let time = time.split_once('.').map_or(time, |(whole, fraction)| {
            if fraction.bytes().all(|b| b.is_ascii_digit()) {
                whole
            } else {
                ""
            }
        });
        let mut hms = time.split(':');
        let h: i64 = digits(hms.next()?, 2)?;
        let m: i64 = digits(hms.next()?, 2)?;
        let s: i64 = digits(hms.next()?, 2)?;
        if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        seconds += h * 3600 + m * 60 + s;
    }
    Some(seconds)
}

fn digits(text: &str, len: usize) -> Option<i64> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("s3:Get*", "s3:GetObject", false));
        assert!(wildcard("s3:get*", "s3:GetObject", true));
        assert!(!wildcard("s3:get*", "s3:GetObject", false));
        assert!(wildcard("photos/*", "photos/", false));
        assert!(wildcard("a?c", "abc", false));
        assert!(!wildcard("a?c", "ac", false));
        assert!(wildcard("*/x/*", "a/b/x/c", false));
        assert!(!wildcard("photos/*", "other/x", false));
        assert!(wildcard("*", "", false));
    }

    #[test]
    fn cidrs() {
        let block = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(block.contains("203.0.113.9".parse().unwrap()));
        assert!(block.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!block.contains("203.0.114.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0/").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20.5Z"), Some(1_700_000_000));
        assert_eq!(parse_date("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("2023-11-14T22:13:20+01:00"), None);
    }
}
