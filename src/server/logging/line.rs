//! The two line formats, each value written once, straight into the
//! subscriber's line buffer.
//!
//! tracing-subscriber's own formatters spent 8,500 (text) to 14,600 (JSON)
//! instructions a request more than these (BENCHMARKS.md, tenth session): the
//! text one quotes every string through `Debug` (a Unicode table look-up per
//! character) and styles every field name even without colour; the JSON one
//! formats each field into a `String` of its own first. These write plain
//! values as they are and escape only what needs it.
//!
//! - Text: `2026-12-07T21:08:09.205932Z  INFO routeguard::serve: snapshot
//!   loaded objects=39 name=reviews note=""`. A string value is written bare
//!   when it is plain (ASCII letters, digits and `-._:/,@+`), else quoted and
//!   escaped as a JSON string, so a value can neither break the line nor fake
//!   a field. A `Debug` or `Display` value is written the same way.
//! - JSON: `{"timestamp":"…","level":"INFO","message":"…","objects":39,…,
//!   "target":"routeguard::serve"}`, the shape of tracing-subscriber's
//!   flattened JSON (so collectors set up for it keep working).
//!
//! Events from the `log` crate (rustls logs through it) carry their own
//! target. Spans are not written: routeguard opens none.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::LogFormat;

/// The event formatter of [`super::init`].
#[derive(Debug, Clone, Copy)]
pub struct Line(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = humantime::format_rfc3339_micros(SystemTime::now());
        let level = metadata.level();
        let skip_log = normalized.is_some();
        match self.0 {
            LogFormat::Json => {
                write!(writer, "{{\"timestamp\":\"{now}\",\"level\":\"{}\"", level.as_str())?;
                let mut fields = Fields::new(writer.by_ref(), self.0, skip_log);
                event.record(&mut fields);
                fields.result?;
                writer.write_str(",\"target\":")?;
                write_json_str(&mut writer, metadata.target())?;
                writer.write_str("}\n")
            }
            LogFormat::Text => {
                if writer.has_ansi_escapes() {
                    let colour = match *level {
                        Level::ERROR => "31",
                        Level::WARN => "33",
                        Level::INFO => "32",
                        Level::DEBUG => "34",
                        Level::TRACE => "35",
                    };
                    write!(
                        writer,
                        "\x1b[2m{now}\x1b[0m \x1b[{colour}m{:>5}\x1b[0m \x1b[2m{}:\x1b[0m",
                        level.as_str(),
                        metadata.target()
                    )?;
                } else {
                    write!(writer, "{now} {:>5} {}:", level.as_str(), metadata.target())?;
                }
                let mut fields = Fields::new(writer.by_ref(), self.0, skip_log);
                event.record(&mut fields);
                fields.result?;
                writer.write_str("\n")
            }
        }
    }
}

/// Writes an event's fields in one format, keeping the first error met.
struct Fields<'a> {
    writer: Writer<'a>,
    format: LogFormat,
    /// The `log.*` fields of an event from the `log` crate: its metadata, already used.
    skip_log: bool,
    result: fmt::Result,
}

impl<'a> Fields<'a> {
    fn new(writer: Writer<'a>, format: LogFormat, skip_log: bool) -> Self {
        Fields { writer, format, skip_log, result: Ok(()) }
    }

    /// Writes the key of a field (`,"key":` or ` key=`; the text message has none) and then its
    /// value, unless the field is skipped or an earlier write failed.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>, &str) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || (self.skip_log && name.starts_with("log.")) {
            return;
        }
        // `r#type = …` names the field `r#type`.
        let name = name.strip_prefix("r#").unwrap_or(name);
        let w = &mut self.writer;
        self.result = match self.format {
            LogFormat::Json => {
                w.write_char(',').and_then(|()| write_json_str(w, name)).and_then(|()| w.write_char(':'))
            }
            LogFormat::Text if name == "message" => w.write_char(' '),
            LogFormat::Text => write!(w, " {name}="),
        }
        .and_then(|()| value(w, name));
    }

    /// A string value: quoted in JSON, bare in text when plain, the text message as it is.
    fn write_str(format: LogFormat, w: &mut Writer<'_>, name: &str, value: &str) -> fmt::Result {
        match format {
            LogFormat::Json => write_json_str(w, value),
            LogFormat::Text if name == "message" => w.write_str(value),
            LogFormat::Text => write_text_str(w, value),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let format = self.format;
        self.field(field, |w, name| Self::write_str(format, w, name, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w, _| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w, _| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as strings.
        let quote = self.format == LogFormat::Json && !value.is_finite();
        self.field(field, |w, _| if quote { write!(w, "\"{value}\"") } else { write!(w, "{value}") });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w, _| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let format = self.format;
        self.field(field, |w, name| match format {
            LogFormat::Json => {
                w.write_char('"')?;
                write!(JsonEscaped(w), "{value:?}")?;
                w.write_char('"')
            }
            // The message is the line's prose: written as it is.
            LogFormat::Text if name == "message" => write!(w, "{value:?}"),
            // Rare on the hot path (the admission line records strings).
            LogFormat::Text => write_text_str(w, &format!("{value:?}")),
        });
    }
}

/// A text-format value: bare when plain, else as a JSON string.
fn write_text_str(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'/' | b',' | b'@' | b'+'));
    if plain { w.write_str(value) } else { write_json_str(w, value) }
}

/// `value` as a JSON string, quotes included.
fn write_json_str(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscaped(w).write_str(value)?;
    w.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string.
struct JsonEscaped<'w, W: fmt::Write>(&'w mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut start = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            // Escapes and control characters are ASCII: `i` is a char boundary.
            self.0.write_str(&text[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&text[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("captured").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes through a subscriber with this format.
    fn lines(format: LogFormat, ansi: bool, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(ansi).event_format(Line(format)).finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().expect("captured").clone()).expect("utf-8")
    }

    fn admission() {
        tracing::info!(
            uid = "705ab4f5-6393-11e8",
            name = "reviews v2",
            codes = "RG103,RG201",
            dry_run = false,
            latency_us = 42u64,
            offset = -3i64,
            ratio = 0.5,
            paths = ?["a b"],
            note = "",
            r#type = "x\"y\nz\u{1}",
            "admission"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_every_field_and_its_type() {
        let text = lines(LogFormat::Json, false, admission);
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).expect("one JSON object");
        // The key order, read in the text (a parsed map need not keep it).
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key}: {text}"));
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        assert!(at("timestamp") < at("level") && at("level") < at("message") && at("message") < at("uid"), "{text}");
        assert!(text.trim_end().ends_with(&format!("\"target\":\"{}\"}}", module_path!())), "{text}");
        assert!(humantime::parse_rfc3339(line["timestamp"].as_str().expect("timestamp")).is_ok(), "{line}");
        assert_eq!((&line["level"], &line["message"]), (&Value::from("INFO"), &Value::from("admission")));
        assert_eq!((&line["uid"], &line["name"]), (&Value::from("705ab4f5-6393-11e8"), &Value::from("reviews v2")));
        assert_eq!((&line["dry_run"], &line["latency_us"], &line["offset"]), (&false.into(), &42.into(), &(-3).into()));
        assert_eq!((&line["ratio"], &line["paths"], &line["note"]), (&0.5.into(), &"[\"a b\"]".into(), &"".into()));
        assert_eq!(line["type"], "x\"y\nz\u{1}");
        assert_eq!(line["target"], module_path!());
    }

    #[test]
    fn text_lines_write_plain_values_bare_and_quote_the_rest() {
        let text = lines(LogFormat::Text, false, admission);
        let (time, rest) = text.split_once(' ').expect("timestamp first");
        assert!(humantime::parse_rfc3339(time).is_ok(), "{text}");
        let expected = format!(
            " INFO {}: admission uid=705ab4f5-6393-11e8 name=\"reviews v2\" codes=RG103,RG201 dry_run=false \
             latency_us=42 offset=-3 ratio=0.5 paths=\"[\\\"a b\\\"]\" note=\"\" type=\"x\\\"y\\nz\\u0001\"\n",
            module_path!()
        );
        assert_eq!(rest, expected);
    }

    #[test]
    fn colour_marks_the_level_and_dims_the_rest_only_when_asked_for() {
        let text = lines(LogFormat::Text, true, || tracing::warn!(code = 7u64, "careful"));
        assert!(text.contains("\x1b[33m WARN\x1b[0m"), "{text:?}");
        assert!(text.ends_with("line::tests:\x1b[0m careful code=7\n"), "{text:?}");
        assert!(!lines(LogFormat::Text, false, || tracing::warn!("careful")).contains('\x1b'));
    }

    #[test]
    fn a_message_from_format_arguments_is_prose_in_text_and_a_string_in_json() {
        let n = 3;
        let text = lines(LogFormat::Text, false, || tracing::error!(kind = "Service", "{n} objects \"lost\""));
        assert!(
            text.ends_with(" ERROR routeguard::server::logging::line::tests: 3 objects \"lost\" kind=Service\n"),
            "{text}"
        );
        let json = lines(LogFormat::Json, false, || tracing::error!("{n} objects \"lost\""));
        let line: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(line["message"], "3 objects \"lost\"");
    }

    #[test]
    fn an_event_from_the_log_crate_carries_its_own_target_and_no_log_fields() {
        let log = || {
            let mut record = log::Record::builder();
            record.args(format_args!("sending alert")).level(log::Level::Warn).target("rustls::common_state");
            tracing_log::format_trace(&record.line(Some(9)).build()).expect("traced");
        };
        let line: Value = serde_json::from_str(&lines(LogFormat::Json, false, log)).expect("JSON");
        assert_eq!((&line["target"], &line["message"]), (&"rustls::common_state".into(), &"sending alert".into()));
        assert_eq!(line.as_object().expect("object").len(), 4, "timestamp, level, message, target: {line}");
        let text = lines(LogFormat::Text, false, log);
        assert!(text.ends_with("  WARN rustls::common_state: sending alert\n"), "{text}");
    }

    #[test]
    fn json_writes_what_it_cannot_hold_as_a_number_as_a_string() {
        let log = || tracing::info!(nan = f64::NAN, inf = f64::INFINITY, "odd");
        let line: Value = serde_json::from_str(&lines(LogFormat::Json, false, log)).expect("JSON");
        assert_eq!((&line["nan"], &line["inf"]), (&"NaN".into(), &"inf".into()));
        assert!(lines(LogFormat::Text, false, log).ends_with(": odd nan=NaN inf=inf\n"));
    }

    #[test]
    fn escaping_keeps_multibyte_text_whole() {
        let mut out = String::new();
        write_json_str(&mut out, "é\t\"ü\"").expect("written");
        assert_eq!(out, "\"é\\t\\\"ü\\\"\"");
        assert_eq!(serde_json::from_str::<String>(&out).expect("JSON"), "é\t\"ü\"");
        let mut out = String::new();
        write_text_str(&mut out, "naïve").expect("written");
        assert_eq!(out, "\"naïve\"");
    }
}
