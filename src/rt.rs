//! The tokio runtime the actors run on.

/// A multi-threaded runtime with two workers: actors do blocking file I/O inside
/// `block_in_place`, which needs the multi-threaded scheduler.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("litefleet-rt")
        .enable_all()
        .build()
}
