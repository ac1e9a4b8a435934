//! A slice of every dataset, for runs spread over machines (`--shard i/n`).

/// Which slice of every dataset a run evaluates: images `[k*len/n,
/// (k+1)*len/n)` of each set, for k = `index`. Slices are contiguous so
/// that shards joined in index order are the unsharded lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `i/n` with 0 <= i <= n, n >= 1. `n/n` is taken as `0/n`, so shards
    /// numbered 0..n-1 (Slurm's array ids) and 1..n both cover every slice once.
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("--shard `{s}`: expected i/n with 0 <= i < n (e.g. 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard {
            index: i % n,
            count: n,
        })
    }

    /// The range of a list of `len` items this shard takes.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        (self.index * len / self.count)..((self.index + 1) * len / self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_item_once() {
        for len in [0, 1, 7, 100] {
            for n in 1..5 {
                let mut seen = Vec::new();
                for i in 0..n {
                    seen.extend(Shard { index: i, count: n }.range(len));
                }
                assert_eq!(seen, (0..len).collect::<Vec<_>>());
            }
        }
        assert_eq!(Shard::parse("3/3").unwrap(), Shard { index: 0, count: 3 });
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("x").is_err());
    }
}
