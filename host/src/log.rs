//! What the host says to its operator, through `tracing`: one line per
//! event on standard error, human (`wsgate: ...`, as the host always spoke)
//! or JSON (`--log-format json`, one object a line, for a log shipper).
//!
//! The library only makes events; [`init`] (the `wsgate` binary's) installs
//! the subscriber that writes them. An embedder installs its own, or none.
//!
//! | target | what |
//! |---|---|
//! | `wsgate` | the gateway's own lines: listening, reloads, drains, a session's failure |
//! | `wsgate::access` | one line per gateway session, at its end: route, client, upstream, commit stage, outcome, duration, bytes, messages and close codes both ways |
//! | `wsgate::plugin` | a gateway plugin's standard error, a line each, in JSON mode |

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// The target of the access log's events.
pub(crate) const ACCESS: &str = "wsgate::access";
/// The target of plugins' standard error lines (JSON mode).
pub(crate) const PLUGIN: &str = "wsgate::plugin";

/// How the log's lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `wsgate: what happened key=value ...`, warnings as `wsgate: warning: ...`.
    #[default]
    Human,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and
    /// the event's fields.
    Json,
}

/// Set once the JSON subscriber is installed: plugins' standard error then
/// goes through the log too, so that every line on standard error is JSON.
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether the log is JSON (plugins' output is then logged, not passed on).
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the process's log subscriber, writing `format` lines to
/// standard error, events at `INFO` and above. Fails if one is installed
/// already.
pub fn init(format: LogFormat) -> Result<(), crate::Error> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(Level::INFO);
    let installed = match format {
        LogFormat::Human => builder.event_format(Human).try_init(),
        LogFormat::Json => {
            let installed = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init();
            JSON.store(installed.is_ok(), Ordering::Relaxed);
            installed
        }
    };
    installed.map_err(|e| crate::Error::config(format!("cannot install the log: {e}")))
}

/// The human format: `wsgate: ` and the message, then the event's other
/// fields as `key=value` (the access log is all fields).
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = HumanFields::default();
        event.record(&mut fields);
        writer.write_str("wsgate: ")?;
        if *event.metadata().level() == Level::WARN {
            writer.write_str("warning: ")?;
        }
        if event.metadata().target() == ACCESS {
            writer.write_str("access")?;
        } else {
            writer.write_str(&fields.message)?;
        }
        writeln!(writer, "{}", fields.rest)
    }
}

/// An event's message, and its other fields as ` key=value`.
#[derive(Default)]
struct HumanFields {
    message: String,
    rest: String,
}

impl Visit for HumanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

/// A gateway plugin's standard error in JSON mode: each line becomes an
/// event (target `wsgate::plugin`) with the session and route, so that the
/// plugin's lines are JSON like the rest. A line over [`MAX_LINE`] bytes
/// is cut there.
#[derive(Clone)]
pub(crate) struct PluginLines {
    pub(crate) session: Option<u64>,
    pub(crate) route: std::sync::Arc<str>,
}

/// The longest plugin line logged as one event.
const MAX_LINE: usize = 4096;

impl wasmtime_wasi::cli::IsTerminal for PluginLines {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginLines {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            lines: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    lines: PluginLines,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(
            target: PLUGIN,
            session = self.lines.session,
            route = %self.lines.route,
            "{}",
            line.trim_end_matches('\r')
        );
    }

    fn take(&mut self, buf: &[u8]) {
        self.pending.extend_from_slice(buf);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            self.emit(&self.pending[start..start + end]);
            start += end + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() > MAX_LINE {
            self.emit(&self.pending[..MAX_LINE]);
            self.pending.drain(..MAX_LINE);
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.take(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        // A last line without its newline.
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}
