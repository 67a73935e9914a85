//! Log output: text for people, or `--log-format json`: one JSON object per event, carrying the
//! fields of the spans it happened in (`pair`, `agent`, `run`) next to its own (`error`, ...).

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, FormatFields};

use crate::domain::error::{MAX_REASON, bounded};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr. `-v` raises the level; RUST_LOG overrides it. Progress lines, and where
/// the service listens, show at any level.
/// The log target of the line saying where `tandem run` serves.
pub(super) const LISTENING: &str = "tandem::listening";

pub(super) fn init(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // sqlx's per-statement logs stay quiet unless asked for.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},sqlx=warn,hyper_util=warn,tandem::engine::progress=info,{LISTENING}=info"
        ))
    });
    // No `log` bridge on purpose: libdav's trace logging prints request headers, credentials included.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .fmt_fields(text_fields())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
            .map_err(|e| e.to_string()),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(JsonLines)
            .try_init()
            .map_err(|e| e.to_string()),
    };
}

/// The longest field value a log line carries.
const MAX_FIELD: usize = 4 * MAX_REASON;

/// Text fields as the default formatter writes them (`name=value`, the message bare), but each
/// value one bounded line: a request path's `%0A` or `%1B`, or a server's megabyte answer in an
/// error, cannot forge a log line, drive the terminal or flood the log.
fn text_fields() -> impl for<'w> FormatFields<'w> + 'static {
    format::debug_fn(|w, field, value| {
        let shown = bounded(&format!("{value:?}"), MAX_FIELD);
        match field.name() {
            "message" => write!(w, "{shown}"),
            name => write!(w, "{name}={shown}"),
        }
    })
    .delimited(" ")
}

/// Writes each event as one line of JSON: time, level, target, message, then the fields of its
/// spans from the outermost in, then its own.
pub(super) struct JsonLines;

struct SpanFields(Map<String, Value>);

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(bounded(&format!("{value:?}"), MAX_FIELD)),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(
            field.name().to_string(),
            Value::String(bounded(value, MAX_FIELD)),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(
            field.name().to_string(),
            Value::String(bounded(&value.to_string(), MAX_FIELD)),
        );
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut map = Map::new();
        attrs.record(&mut Fields(&mut map));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(map));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use crate::cli::logging::{MAX_FIELD, text_fields};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A request path's `%0A` and `%1B`, decoded into a field or the message, stay on their line.
    #[test]
    fn text_lines_escape_control_characters_and_stay_bounded() {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(text_fields())
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let path = "/pairs/x\nFORGED line \u{1b}[31mred";
            tracing::warn!(request = %path, other = ?path, "asked for {path}");
            tracing::warn!(error = %"y".repeat(100_000), "long");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!text.contains('\u{1b}') && !lines.iter().any(|l| l.starts_with("FORGED")));
        assert!(
            lines[0].contains("request=/pairs/x\\nFORGED line \\u{1b}[31mred"),
            "{}",
            lines[0]
        );
        assert!(lines[1].len() < MAX_FIELD + 200, "{}", lines[1].len());
    }
}
