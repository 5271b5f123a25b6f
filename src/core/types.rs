//! Domain newtypes shared by every layer: transaction ids, page numbers, checksums, positions,
//! node and cluster identities, lease epochs.
//!
//! These are plain values with no behaviour beyond formatting and parsing; arithmetic that has
//! an invariant (for example "the next TXID") lives where the invariant is enforced.

use std::fmt;
use std::str::FromStr;

/// A transaction id. TXIDs start at 1 and grow by one per committed transaction; 0 means
/// "no transaction yet" (an empty database).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txid(pub u64);

impl Txid {
    /// The position of a database that has never committed.
    pub const ZERO: Txid = Txid(0);

    /// The TXID after this one, or `None` on overflow (never reached in practice, but a peer
    /// can send `u64::MAX`).
    pub fn next(self) -> Option<Txid> {
        self.0.checked_add(1).map(Txid)
    }
}

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A 1-based SQLite page number. Page 0 does not exist; on the wire a zero page number ends
/// the LTX page block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(pub u32);

impl PageNo {
    /// Byte offset of this page in a database file of the given page size.
    ///
    /// Invariant: `self.0 >= 1`; callers check page numbers when decoding.
    pub fn offset(self, page_size: u32) -> u64 {
        u64::from(self.0.saturating_sub(1)) * u64::from(page_size)
    }

    /// The page that holds SQLite's lock bytes (offset 0x40000000). It is never written by
    /// SQLite and never stored in an LTX file.
    pub fn lock_page(page_size: u32) -> PageNo {
        PageNo(0x4000_0000 / page_size + 1)
    }
}

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An LTX checksum: CRC-64/GO-ISO with bit 63 forced on, so that 0 can mean "none".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checksum(pub u64);

impl Checksum {
    /// Bit 63, set on every stored checksum.
    pub const FLAG: u64 = 1 << 63;
    /// The checksum of an empty (or deleted) database: the flag alone.
    pub const EMPTY: Checksum = Checksum(Self::FLAG);

    /// Whether this is a well-formed stored checksum (bit 63 set).
    pub fn is_flagged(self) -> bool {
        self.0 & Self::FLAG != 0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A replication position: the last applied TXID and the database checksum after it.
/// Two nodes at the same position hold byte-identical databases (up to CRC collisions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    pub txid: Txid,
    pub checksum: Checksum,
}

impl Pos {
    /// The position of a database that does not exist yet.
    pub const EMPTY: Pos = Pos { txid: Txid::ZERO, checksum: Checksum(0) };

    pub fn new(txid: u64, checksum: u64) -> Pos {
        Pos { txid: Txid(txid), checksum: Checksum(checksum) }
    }
}

/// Formats as LiteFS's `-pos` file body without the newline: `%016x/%016x`.
impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.txid, self.checksum)
    }
}

/// Error parsing a textual position or identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what}: {text:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub text: String,
}

fn parse_hex16(text: &str, what: &'static str) -> Result<u64, ParseError> {
    let err = || ParseError { what, text: text.to_owned() };
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    u64::from_str_radix(text, 16).map_err(|_| err())
}

/// Parses `%016x/%016x`, with or without a trailing newline.
impl FromStr for Pos {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Pos, ParseError> {
        let t = s.strip_suffix('\n').unwrap_or(s);
        let Some((a, b)) = t.split_once('/') else {
            return Err(ParseError { what: "position", text: s.to_owned() });
        };
        Ok(Pos::new(parse_hex16(a, "position")?, parse_hex16(b, "position")?))
    }
}

/// A position an application waits for on a replica (read-your-writes), as written to a
/// `-pos` file: the text read from the primary's `-pos` (`%016x/%016x`) or a bare TXID
/// (`%016x`), surrounding whitespace allowed. Only the TXID counts: a replica with a
/// different history at that TXID is resynced by the primary (`protocol.md` §5.2).
pub fn parse_wait(text: &str) -> Result<Txid, ParseError> {
    let t = text.trim();
    match t.contains('/') {
        true => t.parse::<Pos>().map(|p| p.txid),
        false => parse_hex16(t, "TXID").map(Txid),
    }
    .map_err(|_| ParseError { what: "position to wait for", text: text.to_owned() })
}

/// Identifies one running node. Stamped into the LTX `NodeID` field of files it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// A lease term. Epochs only grow; a frame or write carrying an older epoch than the node has
/// seen is refused (fencing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A reading of a monotonic clock, in milliseconds from an origin the shell chose (the
/// process start). The core never reads a clock: the shells pass it in, the simulator
/// advances it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Identifies a cluster. Written as LiteFS writes its `clusterid` file: `LFSC` followed by 16
/// uppercase hex digits. Zero means "not assigned yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LFSC{:016X}", self.0)
    }
}

impl FromStr for ClusterId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<ClusterId, ParseError> {
        let t = s.trim_end_matches('\n');
        let Some(hex) = t.strip_prefix("LFSC") else {
            return Err(ParseError { what: "cluster id", text: s.to_owned() });
        };
        parse_hex16(hex, "cluster id").map(ClusterId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_positions() {
        assert_eq!(parse_wait("0000000000000016/de6e5107092f964d\n"), Ok(Txid(0x16)));
        assert_eq!(parse_wait("  00000000000000ff\n"), Ok(Txid(0xff)));
        assert!(parse_wait("ff").is_err());
        assert!(parse_wait("").is_err());
        assert!(parse_wait("0000000000000016/xx").is_err());
    }

    #[test]
    fn pos_round_trips_through_text() {
        let p = Pos::new(0x16, 0xde6e5107092f964d);
        assert_eq!(p.to_string(), "0000000000000016/de6e5107092f964d");
        assert_eq!("0000000000000016/de6e5107092f964d\n".parse::<Pos>(), Ok(p));
        assert!("16/de6e5107092f964d".parse::<Pos>().is_err());
        assert!("000000000000001g/de6e5107092f964d".parse::<Pos>().is_err());
        assert!("0000000000000016-de6e5107092f964d".parse::<Pos>().is_err());
    }

    #[test]
    fn cluster_id_uses_litefs_text_form() {
        let id: ClusterId = "LFSC0123456789ABCDEF\n".parse().unwrap();
        assert_eq!(id, ClusterId(0x0123456789abcdef));
        assert_eq!(id.to_string(), "LFSC0123456789ABCDEF");
        assert!("XXXX0123456789ABCDEF".parse::<ClusterId>().is_err());
    }

    #[test]
    fn lock_page_matches_sqlite() {
        assert_eq!(PageNo::lock_page(4096), PageNo(262145));
        assert_eq!(PageNo::lock_page(512), PageNo(2097153));
        assert_eq!(PageNo::lock_page(65536), PageNo(16385));
        assert_eq!(PageNo(3).offset(4096), 8192);
    }
}
