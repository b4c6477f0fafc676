//! Log output: text or JSON lines on standard error, filtered by `RUST_LOG`
//! (default `info`), in the formats of [`line`].
//!
//! Every admission logs one line. Written one `write` system call each, on
//! the async workers, the lines cost a fifth of a request's CPU under load;
//! handed one by one to a writer thread (`tracing-appender`), the wake-up of
//! that thread per line cost as much. So lines go to a shared buffer (one
//! uncontended lock per line) that a writer thread empties every
//! [`FLUSH_INTERVAL`]: one write for all the lines of that interval. A line
//! waits at most that long; a buffer over [`MAX_BUFFERED`] is written out by
//! the logger itself (the queue never drops and never grows without bound);
//! dropping the [`LogGuard`] writes out the rest. Lines leave in the order
//! they were logged; only what bypasses the subscriber (a panic message,
//! `eprintln!`) can come out ahead of up to one interval of earlier lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

mod line;

/// How long a line waits in the buffer at most.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// A buffer this large is written out at once, by the thread that logs.
pub const MAX_BUFFERED: usize = 1 << 20;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the log writer running; dropping it writes out what is buffered.
/// Hold it until the process is about to exit.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(Option<(Arc<Shared>, std::thread::JoinHandle<()>)>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((shared, thread)) = self.0.take() {
            shared.lock().stopped = true;
            shared.wake.notify_one();
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber (a second call does nothing and returns an
/// empty guard).
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let shared = Arc::new(Shared::new(MAX_BUFFERED, Box::new(write_to_stderr)));
    let writer = Batched(shared.clone());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && format == LogFormat::Text)
        .event_format(line::Line(format))
        .try_init();
    if installed.is_err() {
        return LogGuard(None);
    }
    let flusher = shared.clone();
    match std::thread::Builder::new().name("routeguard-log".to_string()).spawn(move || flush_until_stopped(&flusher)) {
        Ok(thread) => LogGuard(Some((shared, thread))),
        // No thread: every line is written by its logger, at once (and what
        // was logged since `try_init` now).
        Err(_) => {
            shared.lock().stopped = true;
            shared.write_pending(&[]);
            LogGuard(None)
        }
    }
}

/// Where the lines end up (standard error; a buffer in tests).
type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The buffer, the writer thread's signal and the sink.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while writing to the sink, taken before `state`: bytes leave in
    /// the order they were buffered, whoever writes them.
    output: Mutex<()>,
    /// A buffer this large is written out by the logger ([`MAX_BUFFERED`]).
    limit: usize,
    sink: Sink,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("state", &self.state).field("limit", &self.limit).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    buffer: Vec<u8>,
    /// No writer thread (stopped, or never started): loggers write at once.
    stopped: bool,
}

impl Shared {
    fn new(limit: usize, sink: Sink) -> Shared {
        Shared { state: Mutex::default(), wake: Condvar::new(), output: Mutex::new(()), limit, sink }
    }

    /// Writes out what is buffered, then `then`, holding no lock that loggers
    /// append under.
    fn write_pending(&self, then: &[u8]) {
        let _output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = std::mem::take(&mut self.lock().buffer);
        for bytes in [pending.as_slice(), then] {
            if !bytes.is_empty() {
                (self.sink)(bytes);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves bytes, not broken invariants.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: every interval (or when stopped), takes the buffer and
/// writes it out without holding the lock loggers append under.
fn flush_until_stopped(shared: &Shared) {
    loop {
        let stopped = {
            let state = shared.lock();
            if state.stopped {
                true
            } else {
                shared.wake.wait_timeout(state, FLUSH_INTERVAL).unwrap_or_else(PoisonError::into_inner).0.stopped
            }
        };
        shared.write_pending(&[]);
        if stopped {
            return;
        }
    }
}

fn write_to_stderr(bytes: &[u8]) {
    // Nowhere to report a failure to write the log.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The subscriber's writer: appends each formatted line to the shared buffer.
#[derive(Debug, Clone)]
struct Batched(Arc<Shared>);

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Batched;

    fn make_writer(&'a self) -> Batched {
        self.clone()
    }
}

impl Write for Batched {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock();
        if state.stopped {
            drop(state);
            self.0.write_pending(bytes);
            return Ok(bytes.len());
        }
        state.buffer.extend_from_slice(bytes);
        if state.buffer.len() >= self.0.limit {
            // The writer thread is behind: this logger waits for the write
            // (the others go on appending meanwhile).
            drop(state);
            self.0.write_pending(&[]);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Shared` whose sink collects what is written.
    fn captured(limit: usize) -> (Arc<Shared>, Arc<Mutex<Vec<u8>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let shared = Shared::new(limit, Box::new(move |bytes| sink.lock().expect("sink").extend_from_slice(bytes)));
        (Arc::new(shared), written)
    }

    #[test]
    fn lines_wait_in_the_buffer_and_a_full_one_is_written_at_once() {
        let (shared, written) = captured(32);
        let mut writer = Batched(shared.clone());
        writer.write_all(b"one line\n").expect("buffered");
        assert_eq!(shared.lock().buffer, b"one line\n");
        assert!(written.lock().expect("sink").is_empty());
        // Past the bound the logger writes everything out itself.
        writer.write_all(b"a second line, longer than the rest\n").expect("written");
        assert!(shared.lock().buffer.is_empty());
        assert_eq!(*written.lock().expect("sink"), b"one line\na second line, longer than the rest\n");
    }

    #[test]
    fn a_line_written_at_once_follows_the_buffered_ones() {
        let (shared, written) = captured(MAX_BUFFERED);
        Batched(shared.clone()).write_all(b"older\n").expect("buffered");
        // Stopped (or without a writer thread) before the buffer was written out.
        shared.lock().stopped = true;
        Batched(shared.clone()).write_all(b"newer\n").expect("written");
        assert_eq!(*written.lock().expect("sink"), b"older\nnewer\n");
    }

    #[test]
    fn the_writer_thread_empties_the_buffer_and_stops_when_told() {
        let (shared, written) = captured(MAX_BUFFERED);
        let flusher = shared.clone();
        let thread = std::thread::spawn(move || flush_until_stopped(&flusher));
        Batched(shared.clone()).write_all(b"first\n").expect("buffered");
        // Written within an interval or two, by the thread.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while written.lock().expect("sink").is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*written.lock().expect("sink"), b"first\n");
        Batched(shared.clone()).write_all(b"second\n").expect("buffered");
        drop(LogGuard(Some((shared.clone(), thread))));
        assert!(shared.lock().buffer.is_empty(), "written out on drop");
        // After the stop a line is written at once, not kept.
        Batched(shared.clone()).write_all(b"third\n").expect("written");
        assert_eq!(*written.lock().expect("sink"), b"first\nsecond\nthird\n");
    }
}
