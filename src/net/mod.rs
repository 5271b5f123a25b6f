//! I/O adapters over the core.
