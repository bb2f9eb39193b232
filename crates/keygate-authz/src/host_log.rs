//! keygate's `tracing` events written to the log of the proxy it runs in (Envoy's, nginx's
//! error log), so that an operator reads one log: each event becomes one line, handed to the
//! proxy's own writer with its level, prefixed `keygate: `. Never a key: keygate's code logs
//! none (the same events as the sidecar's).

use std::io::Write;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Writes one finished line at a level.
pub type Sink = fn(Level, &str);

/// Sends keygate's events (info and above) to `sink`; once per process (the first call wins).
pub fn install(sink: Sink) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ToHost(sink))
            .with_max_level(Level::INFO)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct ToHost(Sink);

/// One event's line, handed to the sink when the event is done.
struct Line {
    sink: Sink,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            (self.sink)(self.level, &format!("keygate: {text}"));
        }
    }
}

impl<'a> MakeWriter<'a> for ToHost {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        self.line(*meta.level())
    }
}

impl ToHost {
    fn line(&self, level: Level) -> Line {
        Line {
            sink: self.0,
            level,
            buf: Vec::new(),
        }
    }
}
