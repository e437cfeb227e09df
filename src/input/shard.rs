//! `--shard K/N`: split one input between N processes by a stable hash of the
//! row key, so that every row belongs to exactly one shard.
//!
//! The hash is 64-bit FNV-1a over the key's decimal digits (leading zeros
//! dropped, so `007` and `7` land together) or, for a key that is not a whole
//! number, over its trimmed text. A row is in shard `hash % N`. Any language
//! can reproduce it; it never changes between versions.

use std::fmt;
use std::str::FromStr;

use crate::fields::parse_whole_number;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn selects(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (0-based) that a row key belongs to, out of `count`.
pub fn shard_of(key: &str, count: u64) -> u64 {
    let key = key.trim();
    let hash = match parse_whole_number(key) {
        Some(n) => fnv1a(n.to_string().as_bytes()),
        None => fnv1a(key.as_bytes()),
    };
    hash % count.max(1)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// A `--shard` value before `auto` is resolved from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// `None` for `auto`: the index comes from `JOB_COMPLETION_INDEX`.
    pub index: Option<u64>,
    pub count: u64,
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let usage = || format!("`{s}` is not a shard: write K/N (0 ≤ K < N), or auto/N");
        let (k, n) = s.split_once('/').ok_or_else(usage)?;
        let count: u64 = n.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!("`{s}`: the number of shards must be at least 1"));
        }
        let index = if k.trim().eq_ignore_ascii_case("auto") {
            None
        } else {
            let index: u64 = k.trim().parse().map_err(|_| usage())?;
            if index >= count {
                return Err(format!(
                    "`{s}`: shard index {index} is out of range; shards are numbered 0 to {}",
                    count - 1
                ));
            }
            Some(index)
        };
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// Resolves `auto` from the value of `JOB_COMPLETION_INDEX` (Kubernetes
    /// Indexed Jobs).
    pub fn resolve(self, job_index: Option<&str>) -> Result<Shard, String> {
        let index = match self.index {
            Some(i) => i,
            None => {
                let raw = job_index.ok_or(
                    "--shard auto/N needs JOB_COMPLETION_INDEX in the environment \
                     (set by Kubernetes Indexed Jobs)",
                )?;
                let i: u64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| format!("JOB_COMPLETION_INDEX `{raw}` is not a whole number"))?;
                if i >= self.count {
                    return Err(format!(
                        "JOB_COMPLETION_INDEX {i} is out of range for {} shards",
                        self.count
                    ));
                }
                i
            }
        };
        Ok(Shard {
            index,
            count: self.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn shards_are_disjoint_and_cover() {
        for count in 1..6 {
            for id in 1..500u64 {
                let key = id.to_string();
                let owners = (0..count)
                    .filter(|&k| Shard { index: k, count }.selects(&key))
                    .count();
                assert_eq!(owners, 1);
            }
        }
        assert_eq!(shard_of("007", 5), shard_of("7", 5));
        assert_eq!(shard_of(" x ", 5), shard_of("x", 5));
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            "2/4".parse(),
            Ok(ShardSpec {
                index: Some(2),
                count: 4
            })
        );
        assert_eq!(
            "auto/3".parse(),
            Ok(ShardSpec {
                index: None,
                count: 3
            })
        );
        assert!("4/4".parse::<ShardSpec>().is_err());
        assert!("1/0".parse::<ShardSpec>().is_err());
        assert!("x".parse::<ShardSpec>().is_err());
        let auto: ShardSpec = "auto/3".parse().unwrap();
        assert_eq!(auto.resolve(Some("2")), Ok(Shard { index: 2, count: 3 }));
        assert!(auto.resolve(Some("3")).is_err());
        assert!(auto.resolve(None).is_err());
    }
}
