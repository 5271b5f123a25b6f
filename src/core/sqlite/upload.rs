//! Checks of a database file uploaded to replace a database (`POST /import`), decided
//! from its first 100 bytes and its length before anything changes.

use super::db::{DbHeader, DbHeaderError};

/// Why an uploaded file cannot be a database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is empty")]
    Empty,
    #[error("not a SQLite database: {0}")]
    Header(#[from] DbHeaderError),
    #[error("{len} bytes is not a whole number of {page_size}-byte pages (truncated?)")]
    PartialPage { len: u64, page_size: u32 },
    #[error("the header says {header} pages but the file holds {file} (truncated?)")]
    SizeMismatch { header: u32, file: u64 },
    #[error("{pages} pages is more than SQLite allows")]
    TooLarge { pages: u64 },
}

/// Checks an upload of `len` bytes starting with `head` (at least its first 100 bytes when
/// it is that long): a SQLite header with a valid page size, a whole number of pages,
/// and, where the header's own page count is valid, that count.
pub fn check_upload(head: &[u8], len: u64) -> Result<DbHeader, UploadError> {
    if len == 0 {
        return Err(UploadError::Empty);
    }
    let h = DbHeader::parse(head)?;
    let ps = u64::from(h.page_size);
    if !len.is_multiple_of(ps) {
        return Err(UploadError::PartialPage { len, page_size: h.page_size });
    }
    let pages = len / ps;
    if pages > u64::from(u32::MAX - 1) {
        return Err(UploadError::TooLarge { pages });
    }
    if let Some(n) = h.valid_page_count()
        && u64::from(n) != pages
    {
        return Err(UploadError::SizeMismatch { header: n, file: pages });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page_size: u16, pages: u32) -> Vec<u8> {
        let mut b = vec![0u8; 100];
        b[..16].copy_from_slice(super::super::HEADER_MAGIC);
        b[16..18].copy_from_slice(&page_size.to_be_bytes());
        b[18] = 1;
        b[19] = 1;
        b[24..28].copy_from_slice(&7u32.to_be_bytes());
        b[28..32].copy_from_slice(&pages.to_be_bytes());
        b[92..96].copy_from_slice(&7u32.to_be_bytes());
        b
    }

    #[test]
    fn a_whole_database_passes() {
        let h = check_upload(&header(4096, 3), 3 * 4096).unwrap();
        assert_eq!(h.page_size, 4096);
        // 1 means 65536.
        assert_eq!(check_upload(&header(1, 2), 2 * 65536).unwrap().page_size, 65536);
    }

    #[test]
    fn bad_uploads_say_why() {
        assert_eq!(check_upload(b"", 0), Err(UploadError::Empty));
        assert!(matches!(
            check_upload(b"hello world", 11),
            Err(UploadError::Header(DbHeaderError::Short(11)))
        ));
        let mut junk = header(4096, 1);
        junk[0] = b'X';
        assert!(matches!(
            check_upload(&junk, 4096),
            Err(UploadError::Header(DbHeaderError::BadMagic))
        ));
        assert!(matches!(
            check_upload(&header(1000, 1), 1000),
            Err(UploadError::Header(DbHeaderError::BadPageSize(1000)))
        ));
        assert_eq!(
            check_upload(&header(4096, 3), 3 * 4096 - 10),
            Err(UploadError::PartialPage { len: 3 * 4096 - 10, page_size: 4096 })
        );
        assert_eq!(
            check_upload(&header(4096, 3), 2 * 4096),
            Err(UploadError::SizeMismatch { header: 3, file: 2 })
        );
    }

    #[test]
    fn an_invalid_in_header_size_is_not_held_against_the_file() {
        let mut h = header(4096, 3);
        h[92..96].copy_from_slice(&6u32.to_be_bytes()); // version-valid-for != change counter
        assert!(check_upload(&h, 5 * 4096).is_ok());
    }
}
