//! # wsgate-host
//!
//! The native side of wsgate: it owns every socket a plugin uses.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` against the
//! `wsgate:connect` WIT package (see `wit/connect.wit`). It never opens a
//! socket itself: it calls `connect(host, port, options)`, and the host
//! resolves the name, tries the addresses, does TLS with rustls, writes the
//! plugin's *first flight* (the WebSocket upgrade request) once on the
//! committed connection, and hands the plugin a pair of `wasi:io` streams.
//!
//! The crate is organised one module per concept:
//!
//! - [`policy`]: the operator's egress policy: the allow rules checked on
//!   the name before DNS and on every address after it.
//! - [`resolve`]: names to addresses (hickory-resolver, IP literals,
//!   `--resolve` overrides).
//! - [`race`]: from a list of addresses to one committed connection.
//! - [`tls`]: the rustls client configuration (system roots plus extra CAs).
//! - [`report`]: the race log, one JSON line per event.
//! - [`connect`]: the `wsgate:connect` capability: a `Ctx` + `View` +
//!   `HasData` triple, as `wasmtime-wasi` does it for its own interfaces.
//! - [`runtime`]: the wasmtime engine that loads and runs plugins, each in
//!   its own sandbox.
//! - [`limits`]: what one plugin instance may use (memory, CPU time, run
//!   time, connections).
//! - [`config`]: the operator's settings, from a TOML file and flags.
//!
//! # Example
//!
//! Running a plugin from a program, as the `wsgate` binary does:
//!
//! ```no_run
//! use wsgate_host::{ConnectConfig, runtime::{Runtime, RunOptions}};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let runtime = Runtime::new()?;
//! let plugin = runtime.load("echo-client.wasm".as_ref())?;
//! // Nothing is allowed unless a rule allows it.
//! let config = ConnectConfig::builder()
//!     .allow("example.test:443".parse()?)
//!     .build()?;
//! let outcome = runtime
//!     .run(&plugin, config, RunOptions::new(["wss://example.test/", "hello"]))
//!     .await?;
//! std::process::exit(outcome.exit_code());
//! # }
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod connect;
pub mod error;
pub mod limits;
pub mod policy;
pub mod race;
pub mod report;
pub mod resolve;
pub mod runtime;
pub mod tls;

pub use connect::{ConnectConfig, ConnectConfigBuilder};
pub use error::{Error, ErrorKind};
