//! Reloading a serving gateway: the configuration read anew, its plugins
//! compiled, and put in force for new connections, the listeners kept.
//! What cannot change without a restart (the listeners, the admin
//! listener, the pool's size) is compared with what the gateway started
//! with, and a configuration that changes it is refused whole.

use super::Shared;
use super::generation::{self, Bounds, Generation};
use crate::connect::ConnectConfig;
use crate::error::Error;
use crate::limits::Limits;
use crate::settings::{DEFAULT_MAX_SESSIONS, DEFAULT_PLUGIN_MEMORY, ListenAddress, ListenerSettings, Settings};
use std::sync::Arc;

/// Reads the configuration anew, for a reload: the settings as the
/// gateway would be bound with them, and the connect configuration built
/// from them. Runs on a blocking thread (it reads files).
pub type ConfigSource = Box<dyn Fn() -> Result<(Settings, ConnectConfig), Error> + Send + Sync>;

/// What a reload may not change.
pub(super) struct Fixed {
    listeners: Vec<ListenerSettings>,
    admin: Option<ListenAddress>,
    plugin_memory: usize,
    bounds: Bounds,
}

impl Fixed {
    /// What `settings`, the gateway's first, fix until a restart.
    pub(super) fn of(settings: &Settings, bounds: Bounds) -> Fixed {
        Fixed {
            listeners: settings.listener.clone(),
            admin: settings.admin.listen,
            plugin_memory: plugin_memory(settings),
            bounds,
        }
    }

    /// Why `settings` cannot be put in force without a restart, if so.
    fn refuses(&self, settings: &Settings) -> Option<&'static str> {
        if settings.listener != self.listeners {
            return Some("the listeners changed");
        }
        if settings.admin.listen != self.admin {
            return Some("the admin listener changed");
        }
        if max_sessions(settings) != self.bounds.max_sessions {
            return Some("`serve.max-sessions` changed (the instance pool is sized by it)");
        }
        if plugin_memory(settings) != self.plugin_memory {
            return Some("`serve.max-plugin-memory` changed");
        }
        None
    }
}

fn max_sessions(settings: &Settings) -> usize {
    settings.serve.max_sessions.map_or(DEFAULT_MAX_SESSIONS, |n| n.count())
}

fn plugin_memory(settings: &Settings) -> usize {
    settings
        .serve
        .max_plugin_memory
        .map_or(DEFAULT_PLUGIN_MEMORY, |m| m.bytes())
}

/// Each route's limits, checked.
pub(super) fn route_limits(settings: &Settings) -> Result<Vec<Limits>, Error> {
    let limits: Vec<Limits> = settings.route.iter().map(|r| settings.route_limits(r)).collect();
    for l in &limits {
        l.validate()?;
    }
    Ok(limits)
}

/// The routes of `generation`, as the listeners' lines name them.
pub(super) fn describe_routes(generation: &Generation) -> String {
    let routes: Vec<String> = generation
        .routes
        .iter()
        .map(|r| {
            format!(
                "{} ({}{} -> {})",
                r.name,
                r.matcher.host,
                r.matcher.path,
                r.plugin.name()
            )
        })
        .collect();
    routes.join(", ")
}

/// Reads the configuration from the gateway's source and puts it in
/// force; the routes it serves come back, as a line.
///
/// Says what happened on standard error, in one line, whoever asked for it
/// (SIGHUP or the admin listener).
pub(super) async fn reload(shared: &Arc<Shared>) -> Result<String, Error> {
    let result = put_in_force(shared).await;
    match &result {
        Ok(routes) => tracing::info!("reloaded; routes: {routes}"),
        Err(e) => tracing::error!("reload refused: {e}; the configuration in force stays"),
    }
    shared.metrics.reloaded(result.is_ok());
    result
}

async fn put_in_force(shared: &Arc<Shared>) -> Result<String, Error> {
    let _one_at_a_time = shared.reloading.lock().await;
    let worker = shared.clone();
    // Reading files and compiling plugins: off the runtime's threads.
    let planned = tokio::task::spawn_blocking(move || plan(&worker))
        .await
        .map_err(|e| Error::config(format!("the reload stopped: {e}")))??;
    let routes = describe_routes(&planned);
    for route in &planned.routes {
        shared.metrics.add_route(&route.name);
    }
    *shared.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(planned);
    Ok(routes)
}

fn plan(shared: &Shared) -> Result<Generation, Error> {
    let Some(source) = shared.source.get() else {
        return Err(Error::config("this gateway has no configuration to reload from"));
    };
    let (settings, config) = source()?;
    if let Some(why) = shared.fixed.refuses(&settings) {
        return Err(Error::config(format!("{why}: that needs a restart")));
    }
    let limits = route_limits(&settings)?;
    // Counted where the first configuration's connects are.
    let config = config.counted_in(shared.metrics.net().clone());
    generation::plan(
        &shared.runtime,
        &settings,
        limits,
        &config,
        &shared.fixed.bounds,
        &shared.counts,
    )
}
