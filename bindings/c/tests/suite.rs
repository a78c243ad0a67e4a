//! The C API exercised from Rust: the header is current, valid calls match a reference, and
//! every kind of bad input returns its status code with a useful message.

mod bad_decode;
mod bad_misc;
mod common;
mod decode;
mod header;
