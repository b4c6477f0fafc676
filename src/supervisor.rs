//! One supervisor for every background task of `routeguard serve`: the
//! watchers and the index publisher, leader election, the generator
//! controller, the self-managed TLS renewal and the certificate reload.
//!
//! None of them is meant to end. When one does (it returns, returns an error
//! or panics), the replica is half alive: it would still answer `/readyz` 200
//! with a frozen index or a certificate that is never renewed. So the first
//! death is reported through [`Supervisor::died`]; the server fails `/readyz`,
//! logs it at error level and exits non-zero, and Kubernetes restarts the pod.
//!
//! A task stopped on purpose (its [`AbortHandle`], or [`Supervisor::stop`]
//! during shutdown) is not a death.
//!
//! The supervisor is a cheap, cloneable handle: live mode spawns its tasks
//! into it and the server adds its own, so one place watches them all. When
//! the last handle is dropped every task still running is aborted.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It returned, though it should run until stopped.
    Returned,
    /// It returned an error.
    Failed(String),
    /// It panicked, with this message.
    Panicked(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Returned => f.write_str("it returned"),
            Reason::Failed(error) => write!(f, "it failed: {error}"),
            Reason::Panicked(message) => write!(f, "it panicked: {message}"),
        }
    }
}

/// A task that ended on its own: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The name it was spawned with.
    pub task: String,
    pub reason: Reason,
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "background task {:?} died: {}", self.task, self.reason)
    }
}

/// What a supervised task may return: nothing, or a result whose error is reported.
pub trait Exit: Send + 'static {
    /// The reason to report for this return value.
    fn reason(self) -> Reason;
}

impl Exit for () {
    fn reason(self) -> Reason {
        Reason::Returned
    }
}

impl<E: fmt::Display + Send + 'static> Exit for Result<(), E> {
    fn reason(self) -> Reason {
        match self {
            Ok(()) => Reason::Returned,
            Err(e) => Reason::Failed(e.to_string()),
        }
    }
}

impl Exit for Reason {
    fn reason(self) -> Reason {
        self
    }
}

/// A named task not spawned yet: how a caller hands a background task to
/// whoever owns the supervisor (see `server::ClusterParts::tasks`).
pub struct Task {
    name: String,
    future: futures::future::BoxFuture<'static, Reason>,
}

impl Task {
    /// `future` as `name`, to be spawned with [`Supervisor::spawn_task`].
    pub fn new<F>(name: impl Into<String>, future: F) -> Task
    where
        F: Future + Send + 'static,
        F::Output: Exit,
    {
        Task { name: name.into(), future: Box::pin(async move { future.await.reason() }) }
    }

    /// The name it will run as.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("name", &self.name).finish_non_exhaustive()
    }
}

struct Inner {
    deaths: mpsc::UnboundedSender<Death>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Death>>,
    tasks: Mutex<Vec<(String, AbortHandle)>>,
    /// Set by [`Supervisor::stop`]: ends that follow are the shutdown's doing.
    stopping: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, task) in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Spawns named tasks and reports the first one that ends on its own.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Default for Supervisor {
    fn default() -> Supervisor {
        Supervisor::new()
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor").field("tasks", &lock(&self.inner.tasks).len()).finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no tasks yet.
    pub fn new() -> Supervisor {
        let (deaths, receiver) = mpsc::unbounded_channel();
        Supervisor {
            inner: Arc::new(Inner {
                deaths,
                receiver: tokio::sync::Mutex::new(receiver),
                tasks: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// Spawns `task` as `name` (must run inside a Tokio runtime). The handle
    /// lets its owner stop it on purpose, which is not reported as a death.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F) -> AbortHandle
    where
        F: Future + Send + 'static,
        F::Output: Exit,
    {
        let name = name.into();
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        let deaths = self.inner.deaths.clone();
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|(_, t)| !t.is_finished());
        tasks.push((name.clone(), abort.clone()));
        drop(tasks);
        // A second task awaits the first: a panic is only seen through its JoinHandle.
        tokio::spawn(async move {
            let reason = match handle.await {
                Ok(exit) => exit.reason(),
                Err(e) if e.is_panic() => Reason::Panicked(panic_message(e.into_panic().as_ref())),
                // Aborted on purpose.
                Err(_) => return,
            };
            let _ = deaths.send(Death { task: name, reason });
        });
        abort
    }

    /// The names of the tasks still running, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> =
            lock(&self.inner.tasks).iter().filter(|(_, t)| !t.is_finished()).map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// Spawns a [`Task`] made earlier.
    pub fn spawn_task(&self, task: Task) -> AbortHandle {
        self.spawn(task.name, task.future)
    }

    /// Resolves with the first task that ended on its own (never, while all
    /// run). Once [`Supervisor::stop`] was called it never resolves.
    pub async fn died(&self) -> Death {
        let mut receiver = self.inner.receiver.lock().await;
        match receiver.recv().await {
            Some(death) if !self.inner.stopping.load(Ordering::SeqCst) => death,
            // After stop, ends are the shutdown's doing. (`None` cannot happen:
            // `inner` holds a sender.)
            _ => std::future::pending().await,
        }
    }

    /// Stops every task on purpose (shutdown): nothing is reported from now on.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for (_, task) in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }
}

/// The message of a panic payload (`panic!` with a string literal or a formatted message).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn first(supervisor: &Supervisor) -> Death {
        tokio::time::timeout(Duration::from_secs(5), supervisor.died()).await.expect("a death in time")
    }

    #[tokio::test]
    async fn reports_a_task_that_returns_with_its_name() {
        let supervisor = Supervisor::new();
        supervisor.spawn("forever", std::future::pending::<()>());
        supervisor.spawn("quitter", async {});
        assert_eq!(first(&supervisor).await, Death { task: "quitter".into(), reason: Reason::Returned });
        assert_eq!(supervisor.running(), ["forever"]);
    }

    #[tokio::test]
    async fn reports_a_panic_with_its_message_and_an_error() {
        let supervisor = Supervisor::new();
        let lost = 42;
        supervisor.spawn("boom", async move {
            tokio::task::yield_now().await;
            if lost == 42 {
                panic!("index writer lost {lost}");
            }
        });
        let death = first(&supervisor).await;
        assert_eq!(death, Death { task: "boom".into(), reason: Reason::Panicked("index writer lost 42".into()) });
        assert_eq!(death.to_string(), "background task \"boom\" died: it panicked: index writer lost 42");

        supervisor.spawn("fallible", async { Err::<(), _>("forbidden") });
        assert_eq!(first(&supervisor).await.reason, Reason::Failed("forbidden".into()));
    }

    #[tokio::test]
    async fn tasks_stopped_on_purpose_are_not_deaths() {
        let supervisor = Supervisor::new();
        let handle = supervisor.spawn("stopped", std::future::pending::<()>());
        handle.abort();
        let quiet = tokio::time::timeout(Duration::from_millis(200), supervisor.died()).await;
        assert!(quiet.is_err(), "an abort is not a death: {quiet:?}");

        // After stop, even a task that returns because of the shutdown is not reported.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn("waits", async {
            let _ = rx.await;
        });
        supervisor.stop();
        drop(tx);
        let quiet = tokio::time::timeout(Duration::from_millis(200), supervisor.died()).await;
        assert!(quiet.is_err(), "{quiet:?}");
    }

    #[tokio::test]
    async fn dropping_the_last_handle_aborts_every_task() {
        let supervisor = Supervisor::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let handle = supervisor.spawn("holds a sender", async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        let clone = supervisor.clone();
        drop(supervisor);
        tokio::task::yield_now().await;
        assert!(!handle.is_finished(), "a clone still holds it");
        drop(clone);
        let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(closed, Ok(None)), "the task was aborted and its sender dropped");
    }
}
