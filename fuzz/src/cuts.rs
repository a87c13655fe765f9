//! Cutting one input into the chunks a read from the network could return: the
//! protocols must give the same answers whatever the chunking, so every target that
//! feeds a byte stream takes a seed byte that chooses where the cuts fall. A small
//! xorshift generator stands in for randomness so that a crash reproduces from its
//! input file alone.

/// `data` cut into chunks: seed 0 cuts after every byte (the slowest client); any
/// other seed cuts at pseudo-random points, chunks of 1 to `8 * seed` bytes.
pub fn cut(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return data.chunks(1).collect();
    }
    let max = usize::from(seed) * 8;
    let mut rng = Rng(u32::from(seed) | 0x9e37_0000);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (rng.next() as usize % max + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        chunks.push(chunk);
        rest = tail;
    }
    debug_assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), data.len());
    chunks
}

/// Chunk lengths summing to `total`, for protocols where the client chooses the
/// framing (BDAT chunk sizes); same rules as [`cut`].
pub fn sizes(total: usize, seed: u8) -> Vec<usize> {
    let max = usize::from(seed.max(1)) * 8;
    let mut rng = Rng(u32::from(seed) | 0x7f4a_0000);
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = (rng.next() as usize % max + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// xorshift32: deterministic, and never stuck at zero because seeds are non-zero.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}
