//! Logging (`tracing`): human lines by default or JSON objects on request, to stderr, filtered
//! by `ROOKERY_LOG`; and the last warnings and errors kept in memory for the admin page.

use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How many warnings and errors are kept.
const KEEP: usize = 200;

/// One warning or error as the admin page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub time: String,
    pub level: &'static str,
    pub target: String,
    /// The message, then the event's and its spans' fields as `key=value`.
    pub message: String,
}

static RECENT: LazyLock<Mutex<VecDeque<Entry>>> = LazyLock::new(Mutex::default);

/// The last warnings and errors, oldest first.
pub fn recent() -> Vec<Entry> {
    RECENT.lock().expect("log ring").iter().cloned().collect()
}

/// Keeps WARN and ERROR events in the ring, whatever the output filter says.
struct Ring;

#[derive(Default)]
struct Fields(String, String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
}

/// A span's fields as ` key=value`, kept in the span for the events within it.
struct SpanFields(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Ring {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.1));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        values.record(&mut f);
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                fields.0.push_str(&f.1);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        // The connection's span says whose it was (peer, JID).
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    let _ = write!(f.1, " {}{{{}}}", span.name(), fields.0.trim_start());
                }
            }
        }
        let entry = Entry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: if level == Level::ERROR {
                "error"
            } else {
                "warn"
            },
            target: event.metadata().target().to_string(),
            message: format!("{}{}", f.0, f.1),
        };
        let mut ring = RECENT.lock().expect("log ring");
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(entry);
    }
}

/// Installs the global subscriber: `json` (one object per line, span fields included) or
/// human lines, filtered by `ROOKERY_LOG` (default `info`), plus the ring of recent problems.
pub fn init(json: bool) {
    let filter =
        || EnvFilter::try_from_env("ROOKERY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let output = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(output)
        // Spans for their fields, events only from WARN up: DEBUG and TRACE call sites stay
        // disabled unless ROOKERY_LOG asks for them.
        .with(Ring.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.is_span() || *m.level() <= Level::WARN
        })))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_are_kept_with_their_span() {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(Ring);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("c2s", peer = %"192.0.2.1");
            let _g = span.enter();
            tracing::info!("not kept");
            tracing::warn!(code = 7, "kept {}", "warning");
        });
        let all = recent();
        let last = all.last().unwrap();
        assert_eq!(last.level, "warn");
        assert!(last.message.starts_with("kept warning code=7"), "{last:?}");
        assert!(last.message.ends_with(" c2s{peer=192.0.2.1}"), "{last:?}");
        assert!(!all.iter().any(|e| e.message.contains("not kept")));
    }
}
