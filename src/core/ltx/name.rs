//! LTX file names: `%016x-%016x.ltx` (MinTXID, MaxTXID, lowercase hex), as LiteFS names them.

use crate::core::types::Txid;

/// The file name of an LTX file covering `min..=max`.
pub fn file_name(min: Txid, max: Txid) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses a file name written by [`file_name`]. Anything else (temp files, other case,
/// min > max) gives `None`.
pub fn parse_file_name(name: &str) -> Option<(Txid, Txid)> {
    let stem = name.strip_suffix(".ltx")?;
    let (a, b) = stem.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (min, max) = (hex(a)?, hex(b)?);
    (min <= max).then_some((Txid(min), Txid(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(Txid(1), Txid(0xe)), "0000000000000001-000000000000000e.ltx");
        assert_eq!(
            parse_file_name("0000000000000001-000000000000000e.ltx"),
            Some((Txid(1), Txid(0xe)))
        );
        for bad in [
            "0000000000000001-000000000000000E.ltx",
            "0000000000000002-0000000000000001.ltx",
            "0000000000000001-000000000000000e.ltx.tmp",
            "1-2.ltx",
            "0000000000000001_000000000000000e.ltx",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
