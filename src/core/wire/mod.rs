//! Node-to-node wire protocol; see protocol.md.
