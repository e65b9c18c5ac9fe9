//! testbed: what the tests of the workspace share.

pub mod certs;
