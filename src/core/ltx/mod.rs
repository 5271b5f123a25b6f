//! LTX transaction files (LiteFS v0.5 / superfly/ltx v0.3 "version 1").
