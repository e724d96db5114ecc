//! The host's error type.
//!
//! One opaque [`Error`] with a [`kind`](Error::kind) and a cause, in the
//! manner of hyper: callers match on the kind, and print the error as one
//! line (`{}` prints the message and its causes, joined by `: `).

use std::fmt;

/// What went wrong, broadly. Matching on it is how callers tell a bad
/// configuration from a bad plugin from a plugin that failed at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operator's configuration is invalid: a malformed `--resolve`
    /// entry, an unreadable CA file, an out-of-range value.
    Config,
    /// The plugin could not be loaded: a missing file, a core module or
    /// random bytes instead of a component, a compile error.
    Load,
    /// The plugin needs something the host does not provide (an import
    /// outside the `client` world), so it cannot be instantiated.
    Link,
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access).
    Trap,
    /// The plugin was stopped at one of its limits (memory, CPU time, run
    /// time).
    Limit,
    /// A host-side I/O error outside of any plugin connection (writing the
    /// race log, for instance).
    Io,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Load => "cannot load plugin",
            ErrorKind::Link => "cannot instantiate plugin",
            ErrorKind::Trap => "plugin trapped",
            ErrorKind::Limit => "plugin stopped",
            ErrorKind::Io => "i/o error",
        }
    }
}

/// Which limit stopped a plugin, for an error of kind
/// [`ErrorKind::Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// Its own linear memory (`--memory`).
    Memory,
    /// The linear memory of all instances together (`--max-plugin-memory`).
    PluginMemory,
    /// Its CPU time (`--cpu-time`).
    CpuTime,
    /// Its run time (`--run-time`).
    RunTime,
    /// Its connections open at once (`--connections`): the connect was
    /// refused, the plugin goes on.
    Connections,
    /// Its connects per second (`--connects-per-second`): the connect was
    /// refused, the plugin goes on.
    ConnectsPerSecond,
}

impl LimitKind {
    /// The limit's name, as its setting has it (`cpu-time`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::PluginMemory => "max-plugin-memory",
            LimitKind::CpuTime => "cpu-time",
            LimitKind::RunTime => "run-time",
            LimitKind::Connections => "connections",
            LimitKind::ConnectsPerSecond => "connects-per-second",
        }
    }
}

/// An error of the wsgate host.
pub struct Error {
    kind: ErrorKind,
    /// Which limit, for [`ErrorKind::Limit`].
    limit: Option<LimitKind>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The message already says what the cause says (its first line, in
    /// words an operator reads): the cause is kept for callers that walk
    /// [`source`](std::error::Error::source), and not printed again.
    source_in_message: bool,
}

impl Error {
    /// Makes an error of `kind` with a message that says what failed.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            limit: None,
            message: message.into(),
            source: None,
            source_in_message: false,
        }
    }

    /// Attaches the underlying cause; [`Display`](fmt::Display) adds it to
    /// the message.
    pub fn with_source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches the underlying cause, which the message already states in
    /// its own words: it is kept for [`source`](std::error::Error::source)
    /// and not printed.
    pub(crate) fn with_stated_source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self.source_in_message = true;
        self
    }

    /// The broad class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A plugin stopped at `limit`: an error of kind [`ErrorKind::Limit`].
    pub(crate) fn limit_hit(limit: LimitKind, message: impl Into<String>) -> Self {
        Error {
            limit: Some(limit),
            ..Error::new(ErrorKind::Limit, message)
        }
    }

    /// Which limit stopped the plugin, for an error of kind
    /// [`ErrorKind::Limit`]; `None` for any other.
    pub fn limit(&self) -> Option<LimitKind> {
        self.limit
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if self.source_in_message {
            return Ok(());
        }
        // Causes go on the same line: an operator reads one line per error.
        let mut source = self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(s) = source {
            let text = s.to_string();
            // Skip causes that only repeat what the message already says.
            if !text.is_empty() && !self.message.contains(&text) {
                write!(f, ": {}", text.lines().next().unwrap_or_default())?;
            }
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = Error::new(ErrorKind::Load, "reading `x.wasm`").with_source(io);
        assert_eq!(err.to_string(), "cannot load plugin: reading `x.wasm`: No such file");
        assert_eq!(err.kind(), ErrorKind::Load);
    }

    #[test]
    fn a_stated_cause_is_kept_but_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::new(ErrorKind::Io, "cannot write: the disk burns").with_stated_source(io);
        assert_eq!(err.to_string(), "i/o error: cannot write: the disk burns");
        let cause = std::error::Error::source(&err).expect("the cause is kept");
        assert_eq!(cause.to_string(), "disk on fire");
    }
}
