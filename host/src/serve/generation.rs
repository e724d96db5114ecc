//! What a reload replaces: the routes (each with its plugin, policy and
//! limits) and the bounds read per connection. A connection takes the
//! generation in force when it arrives and keeps it to its end, so a
//! reload never changes a running session.

use super::route::{HostPattern, Matcher};
use crate::connect::ConnectConfig;
use crate::error::Error;
use crate::limits::Limits;
use crate::runtime::{Plugin, Runtime};
use crate::settings::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEAD, IdleTimeoutSecs,
    RouteSettings, Settings,
};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The routes and per-connection bounds of one configuration.
pub(super) struct Generation {
    pub(super) routes: Vec<Route>,
    pub(super) max_head: usize,
    pub(super) head_timeout: Duration,
    /// How long a drain waits for sessions to end before it closes them.
    pub(super) drain_timeout: Duration,
    /// Whether each session's end is logged.
    pub(super) access_log: bool,
}

/// A route, checked, its plugin compiled.
pub(super) struct Route {
    pub(super) name: String,
    pub(super) matcher: Matcher,
    pub(super) plugin: Plugin,
    pub(super) args: Vec<String>,
    pub(super) config: ConnectConfig,
    pub(super) limits: Limits,
    pub(super) max_sessions: usize,
    /// Sessions open on the route, counted across generations: a route
    /// that a reload keeps (by name) keeps its count, so its limit holds
    /// over the sessions started before.
    pub(super) sessions: Arc<AtomicUsize>,
    pub(super) idle_timeout: Option<Duration>,
}

/// Each route name's count of open sessions, for every route any
/// generation had (the names come from the configuration: few).
#[derive(Default)]
pub(super) struct RouteCounts(Mutex<Vec<(String, Arc<AtomicUsize>)>>);

impl RouteCounts {
    /// The count of the route `name`, made at 0 the first time.
    fn of(&self, name: &str) -> Arc<AtomicUsize> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, count)) = counts.iter().find(|(n, _)| n == name) {
            return count.clone();
        }
        let count = Arc::new(AtomicUsize::new(0));
        counts.push((name.to_owned(), count.clone()));
        count
    }

    /// Every route name with its count.
    pub(super) fn all(&self) -> Vec<(String, Arc<AtomicUsize>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What a generation must fit in: fixed when the gateway was bound.
pub(super) struct Bounds {
    /// The gateway's session limit (the instance pool's slots).
    pub(super) max_sessions: usize,
    /// The largest linear memory a pool slot holds.
    pub(super) slot_memory: usize,
}

/// Checks `settings`' routes and compiles their plugins: the generation
/// they make. `route_limits` are the routes' limits, checked already.
pub(super) fn plan(
    runtime: &Runtime,
    settings: &Settings,
    route_limits: Vec<Limits>,
    config: &ConnectConfig,
    bounds: &Bounds,
    counts: &RouteCounts,
) -> Result<Generation, Error> {
    let serve = &settings.serve;
    if settings.route.is_empty() {
        return Err(Error::config(
            "no route: give a plugin, or a `[[route]]` with a `plugin`",
        ));
    }
    let idle_default = serve
        .idle_timeout
        .map_or(Some(DEFAULT_IDLE_TIMEOUT), IdleTimeoutSecs::duration);
    let mut routes: Vec<Route> = Vec::with_capacity(settings.route.len());
    for (route, limits) in settings.route.iter().zip(route_limits) {
        if limits.memory > bounds.slot_memory {
            let name = route.name.as_deref().unwrap_or("(unnamed)");
            return Err(Error::config(format!(
                "route `{name}`: a memory limit of {} MiB is over the {} MiB the gateway started with (restart to raise it)",
                limits.memory >> 20,
                bounds.slot_memory >> 20
            )));
        }
        let route = plan_route(
            runtime,
            route,
            limits,
            config,
            bounds.max_sessions,
            idle_default,
            counts,
        )?;
        if routes.iter().any(|r| r.name == route.name) {
            return Err(Error::config(format!("two routes are named `{}`", route.name)));
        }
        routes.push(route);
    }
    Ok(Generation {
        routes,
        max_head: serve.max_head.map_or(DEFAULT_MAX_HEAD, |k| k.bytes()),
        head_timeout: serve.head_timeout.map_or(DEFAULT_HEAD_TIMEOUT, |t| t.duration()),
        drain_timeout: serve.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |t| t.duration()),
        access_log: serve.access_log.unwrap_or(true),
    })
}

/// A route, checked, its plugin compiled.
fn plan_route(
    runtime: &Runtime,
    route: &RouteSettings,
    limits: Limits,
    config: &ConnectConfig,
    max_sessions: usize,
    idle_default: Option<Duration>,
    counts: &RouteCounts,
) -> Result<Route, Error> {
    let Some(path) = &route.plugin else {
        let name = route.name.as_deref().unwrap_or("(unnamed)");
        return Err(Error::config(format!("route `{name}` names no `plugin`")));
    };
    let default_name = path
        .file_stem()
        .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let name = route.name.clone().unwrap_or(default_name);
    let host = match &route.host {
        Some(text) => HostPattern::parse(text).map_err(|e| Error::config(format!("route `{name}`: `host`: {e}")))?,
        None => HostPattern::Any,
    };
    let prefix = route.path.clone().unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/') {
        return Err(Error::config(format!(
            "route `{name}`: `path` must start with `/`, not `{prefix}`"
        )));
    }
    let plugin = runtime.load(path)?;
    plugin.check_gateway()?;
    let config = match &route.policy {
        Some(policy) => config.with_policy(policy.policy()),
        None => config.clone(),
    };
    Ok(Route {
        sessions: counts.of(&name),
        name,
        matcher: Matcher { host, path: prefix },
        plugin,
        args: route.args.clone(),
        config,
        limits,
        max_sessions: route.max_sessions.map_or(max_sessions, |n| n.count()),
        idle_timeout: route.idle_timeout.map_or(idle_default, IdleTimeoutSecs::duration),
    })
}
