//! ftpmount: mount an FTP or FTPS server as a local directory.
//!
//! Layers, top to bottom (data flows one way): [`fuse`] (kernel adapter) → [`fs`] (filesystem
//! semantics, caches) → [`remote`] (FTP-neutral operations, session pool) → [`remote::ftp`]
//! (the protocol, via suppaftp) with [`tls`] (rustls). [`mount`] wires them together for the
//! `mount` command; [`config`] turns command lines and profiles into settings.

pub mod casefold;
pub mod check;
pub mod clock;
pub mod collisions;
pub mod config;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod helper;
pub mod logging;
pub mod memory;
pub mod mount;
pub mod names;
pub mod remote;
pub mod secret;
pub mod status;
pub mod tls;
