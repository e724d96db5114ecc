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
//! The crate is organised one module per concept, each private to the
//! crate; what an embedder needs is re-exported here:
//!
//! - `runtime`: the wasmtime engine that loads and runs plugins, each in
//!   its own sandbox ([`Runtime`], [`Plugin`], [`RunOptions`], [`Outcome`]);
//!   it tells a `client` plugin from a `gateway` plugin by its exports.
//! - `serve`: the gateway (`wsgate serve`, [`Gateway`]): listeners, TLS
//!   with SNI, the bounded request head, routes, and a fresh instance of a
//!   `gateway` plugin per session.
//! - `sessions`: the `wsgate:connect/sessions` capability, a client's
//!   session as the plugin holds it.
//! - `limits`: what one plugin instance may use ([`Limits`]), and how the
//!   host holds it to that (memory, CPU time, connect rate).
//! - [`settings`]: the operator's settings, from defaults, a TOML file and
//!   flags ([`Settings`]); [`range`]: the bounded numbers they are made of.
//! - `connect`: the `wsgate:connect` capability ([`ConnectConfig`]), a
//!   `Ctx` + `View` + `HasData` triple as `wasmtime-wasi` does it.
//! - [`policy`]: the operator's egress allow rules ([`Rule`](policy::Rule),
//!   [`Policy`](policy::Policy)), checked on the name before DNS and on
//!   every address after it.
//! - `resolve`: names to addresses (hickory-resolver, IP literals,
//!   `--resolve` overrides, [`Override`]).
//! - [`nat64`]: IPv4 addresses as IPv6 ones on IPv6-only networks
//!   ([`Nat64Prefix`](nat64::Nat64Prefix), [`Nat64`](nat64::Nat64)):
//!   synthesis, de-synthesis and discovery through `ipv4only.arpa`.
//! - `network`: the local network: an identity (its address prefixes and
//!   default routes) and which families it can reach.
//! - `race`: from the answers for a name to one committed connection
//!   (Happy Eyeballs v3: services, sorting, staggering, ECH, NAT64, and a
//!   history of each path); it takes an address check rather than the
//!   policy itself.
//! - `tls`: the rustls client configuration (system roots plus extra CAs).
//! - `report`: the race log, one JSON line per event ([`LogSink`]).
//! - `host_name`: the one spelling of a host ([`HostName`]) that all of
//!   the above use.
//! - `metrics`: what the admin listener's `/metrics` shows (sessions,
//!   connects and the race, traffic), and each session's own totals for
//!   the access log; `frames` follows a stream's WebSocket frame headers
//!   to count its messages.
//! - [`log`]: the operator's log through `tracing`, human or JSON
//!   ([`log::init`]), and the access log's target.
//! - `error`: the one error type, with a [kind](ErrorKind).
//!
//! The modules depend on each other in one direction only: `host_name`,
//! `range`, `error`, `network`, `frames` and `log` depend on nothing;
//! `nat64`, `policy`, `resolve`, `tls` and `report` on those; `race` on
//! `resolve`, `nat64`, `network` and `report`; `metrics` on `race`,
//! `report` and `frames`; `connect` on all of them; `sessions` on
//! `connect` (its streams); `settings` and `runtime` on top; `serve` over
//! `runtime`.
//!
//! # Example
//!
//! Running a plugin from a program, as the `wsgate` binary does:
//!
//! ```no_run
//! use wsgate_host::{ConnectConfig, RunOptions, Runtime};
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

mod connect;
mod error;
mod frames;
mod host_name;
mod limits;
pub mod log;
mod metrics;
pub mod nat64;
mod network;
pub mod policy;
mod race;
pub mod range;
mod report;
mod resolve;
mod runtime;
mod serve;
mod sessions;
pub mod settings;
mod tls;

pub use connect::{ConnectConfig, ConnectConfigBuilder};
pub use error::{Error, ErrorKind, LimitKind};
pub use host_name::{HostName, HostNameError};
pub use limits::Limits;
pub use race::{CommitStage, EchMode};
pub use report::LogSink;
pub use resolve::{Override, ParseOverrideError};
pub use runtime::{Outcome, Plugin, PoolUsage, RunOptions, Runtime};
pub use serve::{ConfigSource, Drained, Gateway, PoolWatch, Reloader};
pub use settings::Settings;
