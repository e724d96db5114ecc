//! The gateway (`wsgate serve`): clients' WebSocket sessions, each served
//! by a fresh instance of its route's plugin.
//!
//! ```text
//!  client ─TCP/TLS─▶ listener ─ head ─▶ route ─▶ instance of the route's plugin (world `gateway`)
//!                    (rustls, SNI;    (Host +    └─ connect(...) ─▶ policy ─▶ resolve ─▶ race ─▶ upstream
//!                     bounded head;    path)
//!                     400/408/431)     404, 503
//! ```
//!
//! The host owns both sides' sockets and TLS; the plugin owns both sides'
//! WebSocket protocol. What no plugin should see the host answers itself,
//! before any instance exists:
//!
//! | what | answer |
//! |---|---|
//! | a head that does not parse, HTTP/1.1 without `Host`, several `Host`s or one naming no host | 400 |
//! | a head longer than `serve.max-head` (16 KiB), or with over 128 headers | 431 |
//! | a head (TLS included) not in within `serve.head-timeout` (10 s) | 408 |
//! | no route for the `Host` and path | 404 |
//! | `serve.max-sessions`, or the route's, reached | 503 |
//!
//! Each closes the connection. At most [`MAX_PENDING`](connection::MAX_PENDING) connections may be
//! in TLS or their head at a time; more are closed at once. A session whose
//! plugin traps or meets a limit ends alone: with a Close 1011 when the
//! plugin had answered the upgrade and is between two frames, a reset
//! otherwise. Nothing a plugin does ends the process.
//!
//! What sessions share lives in the host: the race's family memory, the
//! resolver, the TLS client roots (one [`ConnectConfig`] for all routes,
//! whose own policies replace only the policy), and the memory budget of
//! all instances together.

mod admin;
mod answer;
mod certs;
mod client;
mod connection;
mod drain;
mod generation;
mod head;
mod listener;
mod reload;
mod route;

pub use drain::Drained;
pub use reload::ConfigSource;

use crate::connect::ConnectConfig;
use crate::error::Error;
use crate::limits::MemoryBudget;
use crate::metrics::{Metrics, NetMetrics};
use crate::runtime::{Pool, PoolUsage, Runtime};
use crate::settings::{DEFAULT_MAX_SESSIONS, DEFAULT_PLUGIN_MEMORY, Settings};
use certs::CertFiles;
use connection::accept_loop;
use generation::{Bounds, Generation, RouteCounts};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A gateway, its listeners bound and its plugins compiled, ready to
/// [`serve`](Gateway::serve).
pub struct Gateway {
    runtime: Arc<Runtime>,
    listeners: Vec<Listener>,
    /// The admin listener and its address, when `[admin] listen` is set.
    admin: Option<(TcpListener, SocketAddr)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.describe())
            .finish_non_exhaustive()
    }
}

struct Listener {
    socket: TcpListener,
    address: SocketAddr,
    tls: Option<(TlsAcceptor, usize)>,
}

/// What every connection task reads: the configuration in force and the
/// gateway's bounds.
struct Shared {
    /// What new connections take; a reload replaces it, and running
    /// sessions keep the one they started with.
    current: RwLock<Arc<Generation>>,
    /// Every route's count of open sessions, across generations.
    counts: RouteCounts,
    /// What a reload must keep (the listeners, the pool's size).
    fixed: reload::Fixed,
    runtime: Arc<Runtime>,
    /// Where a reload reads the configuration (set by the embedder).
    source: OnceLock<ConfigSource>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    max_sessions: usize,
    sessions: AtomicUsize,
    /// The last session's number (the access log's `session`).
    next_session: AtomicU64,
    /// Connections not yet in a session (TLS, head, answer).
    pending: AtomicUsize,
    budget: Arc<MemoryBudget>,
    verbose: bool,
    metrics: Metrics,
    /// Turns true when the drain begins: the gateway takes no more
    /// sessions (`/readyz` says so) and every session's plugin is told.
    going_away: watch::Sender<bool>,
    /// Turns true when the drain timeout passed: the sessions still open
    /// are closed.
    cut: watch::Sender<bool>,
}

impl Shared {
    /// The configuration in force.
    fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the drain has begun.
    fn draining(&self) -> bool {
        *self.going_away.borrow()
    }

    /// The metrics as `/metrics` shows them, the sessions open per route
    /// read from the routes' own counts.
    fn metrics_text(&self) -> String {
        for (route, count) in self.counts.all() {
            self.metrics.set_active(&route, count.load(Ordering::Acquire));
        }
        self.metrics.encode()
    }
}

impl Gateway {
    /// Checks `settings`' listeners and routes, compiles each route's
    /// plugin (keeping compiled code in `cache`, when given) and binds the
    /// listeners. Connects go through `config` (each route with its own
    /// policy, when it has one). Anything wrong stops here, in one line
    /// that names it.
    ///
    /// Binds sockets: call it within a tokio runtime.
    pub fn bind(
        settings: &Settings,
        config: ConnectConfig,
        cache: Option<&Path>,
        verbose: bool,
    ) -> Result<Gateway, Error> {
        let serve = &settings.serve;
        let max_sessions = serve.max_sessions.map_or(DEFAULT_MAX_SESSIONS, |n| n.count());
        let plans = plan_listeners(settings)?;
        // Certificates before plugins: the quick checks first.
        let mut acceptors = Vec::with_capacity(plans.len());
        for (address, certs) in plans {
            let tls = if certs.is_empty() {
                None
            } else {
                Some((certs::acceptor(&certs)?, certs.len()))
            };
            acceptors.push((address, tls));
        }
        // The routes' connects and traffic are counted with the rest.
        let net = NetMetrics::new();
        let config = config.counted_in(net.clone());
        let route_limits = reload::route_limits(settings)?;
        // One slot per session: a session's place is taken before its
        // instance is made and given back once the instance is gone.
        let pool = Pool {
            instances: u32::try_from(max_sessions).unwrap_or(u32::MAX),
            max_memory: route_limits.iter().map(|l| l.memory).max().unwrap_or(0),
        };
        let runtime = Arc::new(Runtime::for_gateway(cache, pool)?);
        let bounds = Bounds {
            max_sessions,
            slot_memory: pool.max_memory,
        };
        let counts = RouteCounts::default();
        let generation = generation::plan(&runtime, settings, route_limits, &config, &bounds, &counts)?;
        // Sockets last: nothing is bound when the configuration is wrong.
        let mut listeners = Vec::with_capacity(acceptors.len());
        for (address, tls) in acceptors {
            let socket = listener::bind(address)?;
            let address = socket.local_addr().unwrap_or(address);
            listeners.push(Listener { socket, address, tls });
        }
        let admin = match settings.admin.listen {
            Some(address) => {
                let socket = listener::bind(address.0)?;
                let address = socket.local_addr().unwrap_or(address.0);
                Some((socket, address))
            }
            None => None,
        };
        let metrics = Metrics::new(generation.routes.iter().map(|r| r.name.as_str()), net);
        let shared = Shared {
            current: RwLock::new(Arc::new(generation)),
            counts,
            fixed: reload::Fixed::of(settings, bounds),
            runtime: runtime.clone(),
            source: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
            max_sessions,
            sessions: AtomicUsize::new(0),
            next_session: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            budget: MemoryBudget::new(serve.max_plugin_memory.map_or(DEFAULT_PLUGIN_MEMORY, |m| m.bytes())),
            verbose,
            metrics,
            going_away: watch::Sender::new(false),
            cut: watch::Sender::new(false),
        };
        Ok(Gateway {
            runtime,
            listeners,
            admin,
            shared: Arc::new(shared),
        })
    }

    /// One line per listener: its address (the port the OS chose, for
    /// port 0), `ws://` or `wss://`, and the routes it serves; then the
    /// admin listener's, when there is one.
    pub fn describe(&self) -> Vec<String> {
        let routes = reload::describe_routes(&self.shared.current());
        self.listeners
            .iter()
            .map(|l| {
                let scheme = match &l.tls {
                    Some((_, 1)) => "wss://".to_owned(),
                    Some((_, n)) => format!("wss://, {n} certificates by SNI"),
                    None => "ws://".to_owned(),
                };
                format!("listening on {} ({scheme}); routes: {routes}", l.address)
            })
            .chain(
                self.admin.iter().map(|(_, address)| {
                    format!("admin on http://{address} (/metrics, /healthz, /readyz, POST /reload)")
                }),
            )
            .collect()
    }

    /// The admin listener's address (`[admin] listen`, the port the OS
    /// chose filled in); `None` without one.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, address)| *address)
    }

    /// A look at the gateway's instance pool, that stays usable while it
    /// [serves](Gateway::serve).
    pub fn pool(&self) -> PoolWatch {
        PoolWatch {
            runtime: self.runtime.clone(),
        }
    }

    /// The addresses the gateway listens on, ports chosen by the OS filled
    /// in.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.address).collect()
    }

    /// Where [`Reloader::reload`] (and the admin listener's `POST
    /// /reload`) reads the configuration anew: a function that reads the
    /// configuration file (with the command line's values on top) and
    /// builds its [`ConnectConfig`]. Without one, a reload is refused.
    pub fn reload_from(&self, source: ConfigSource) {
        // Set once: a second source is ignored.
        let _ = self.shared.source.set(source);
    }

    /// A handle that reloads the configuration while the gateway serves
    /// (for SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes, then drains: the listeners are
    /// closed, `/readyz` answers 503, every session's plugin is told that
    /// the gateway is going away, and the sessions still open after the
    /// drain timeout (`[serve] drain-timeout`) are closed. The admin
    /// listener answers until the drain is over. What the drain did comes
    /// back.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Drained {
        let mut accepting = JoinSet::new();
        for listener in self.listeners {
            accepting.spawn(accept_loop(listener, self.runtime.clone(), self.shared.clone()));
        }
        let mut admin = JoinSet::new();
        if let Some((socket, _)) = self.admin {
            admin.spawn(admin::admin_loop(socket, self.shared.clone()));
        }
        shutdown.await;
        let drained = drain::drain(&self.shared, accepting).await;
        admin.shutdown().await;
        drained
    }
}

/// Reloads a serving gateway's configuration (see
/// [`Gateway::reloader`]).
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Reads the configuration from the gateway's
    /// [source](Gateway::reload_from), compiles the routes' plugins (code
    /// compiled before comes from the cache) and puts it in force for new
    /// sessions; running sessions keep theirs. A configuration that cannot
    /// be used (it does not parse, a plugin does not compile, it changes
    /// what needs a restart: the listeners, the admin listener, the session
    /// limit, the plugin memory) is refused, and the one in force stays.
    /// One line per listener comes back, as [`Gateway::describe`] has them.
    pub async fn reload(&self) -> Result<String, Error> {
        reload::reload(&self.shared).await
    }
}

/// A look at a gateway's instance pool (see [`Gateway::pool`]).
#[derive(Clone)]
pub struct PoolWatch {
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for PoolWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PoolWatch").field(&self.usage()).finish()
    }
}

impl PoolWatch {
    /// What the pool holds now: its slots (as many as the session limit),
    /// the instances alive, what freed slots keep resident.
    pub fn usage(&self) -> PoolUsage {
        // A gateway's runtime always has a pool: zeros only if it had not.
        self.runtime.pool_usage().unwrap_or(PoolUsage {
            slots: 0,
            instances: 0,
            idle_memory_resident: 0,
            idle_stack_resident: 0,
        })
    }
}

/// The listeners' addresses and certificates, checked.
fn plan_listeners(settings: &Settings) -> Result<Vec<(SocketAddr, Vec<CertFiles>)>, Error> {
    if settings.listener.is_empty() {
        return Err(Error::config(
            "no listener: give `--listen ADDR`, or a `[[listener]]` with an `address`",
        ));
    }
    let mut plans: Vec<(SocketAddr, Vec<CertFiles>)> = Vec::new();
    for (i, listener) in settings.listener.iter().enumerate() {
        let Some(address) = listener.address else {
            return Err(Error::config(format!("listener {} has no `address`", i + 1)));
        };
        let address = address.0;
        if plans.iter().any(|(a, _)| *a == address) && address.port() != 0 {
            return Err(Error::config(format!("two listeners on {address}")));
        }
        let mut certs = Vec::with_capacity(listener.tls.len());
        for cert in &listener.tls {
            let (Some(cert), Some(key)) = (&cert.cert, &cert.key) else {
                return Err(Error::config(format!(
                    "listener {address}: a `tls` entry needs both `cert` and `key`"
                )));
            };
            certs.push(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        plans.push((address, certs));
    }
    Ok(plans)
}
