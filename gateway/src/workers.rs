//! The data plane's runtime: the worker threads that serve every connection.
//!
//! One worker (`--threads 1`: a gateway pod with one CPU, a small edge host) runs a
//! single-threaded Tokio runtime on a thread of its own. Tokio's multi-threaded scheduler, with
//! one worker, still readies every task for stealing (shared run queues, the LIFO slot, a search
//! for idle workers to wake on each wake-up) and pays its atomic operations; a single-threaded
//! runtime schedules the same tasks without them. Pingora makes the same choice per thread when
//! `work_stealing` is off (`pingora-runtime`, `NoStealRuntime`). More workers share Tokio's
//! work-stealing runtime, as Pingora's default: connections and the upstream connection pool move
//! freely between them. (A single-threaded runtime per thread was tried: a pooled upstream
//! connection taken by a request on another thread raced the idle watcher Pingora runs on the
//! first, and was dropped instead of reused, which `tests/tests/connection_limits.rs` caught.)

use std::future::Future;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The running workers. Dropping them stops them without waiting for their tasks.
pub struct Workers {
    handle: Handle,
    kind: Kind,
}

enum Kind {
    /// One worker: a single-threaded runtime driven by its thread until told to stop.
    One(Option<oneshot::Sender<()>>),
    /// Several workers: Tokio's work-stealing runtime.
    Stealing(Option<Runtime>),
}

impl Workers {
    /// Starts `threads` workers (at least one), their threads named `name`.
    pub fn start(name: &str, threads: usize) -> std::io::Result<Self> {
        if threads > 1 {
            let rt = work_stealing(name, threads)?;
            return Ok(Workers { handle: rt.handle().clone(), kind: Kind::Stealing(Some(rt)) });
        }
        let rt = Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            // Its tasks run while this thread waits here: until `Workers` stops or is dropped.
            let _ = rt.block_on(stopped);
            rt.shutdown_background();
        })?;
        Ok(Workers { handle, kind: Kind::One(Some(stop)) })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns `task` on the workers.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Enters the runtime (for what binds to the runtime it is made in).
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// Stops the workers; their tasks are dropped where they are, without waiting.
    pub fn shutdown_background(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        match &mut self.kind {
            Kind::One(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
            Kind::Stealing(rt) => {
                if let Some(rt) = rt.take() {
                    rt.shutdown_background();
                }
            }
        }
    }
}

/// Tokio's work-stealing runtime with `threads` workers (at least one), their threads named `name`:
/// the data plane's with several workers, and the operator endpoints' runtime.
pub fn work_stealing(name: &str, threads: usize) -> std::io::Result<Runtime> {
    Builder::new_multi_thread().worker_threads(threads.max(1)).thread_name(name).enable_all().build()
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;
    use std::time::Duration;

    use tokio::runtime::RuntimeFlavor;

    use super::*;

    /// Runs `task` on `workers` and waits for its output.
    fn run<T: Send + 'static>(workers: &Workers, task: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        workers.spawn(async move { tx.send(task.await).unwrap() });
        rx.recv_timeout(Duration::from_secs(10)).expect("the task ran")
    }

    #[test]
    fn one_worker_is_a_single_threaded_runtime_on_a_thread_of_its_own() {
        let workers = Workers::start("one-worker", 1).unwrap();
        assert_eq!(workers.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let (name, flavor) = run(&workers, async {
            (std::thread::current().name().map(String::from), Handle::current().runtime_flavor())
        });
        assert_eq!(name.as_deref(), Some("one-worker"));
        assert_eq!(flavor, RuntimeFlavor::CurrentThread);
        // Timers and sockets work: the thread drives the runtime's drivers.
        let echoed = run(&workers, async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            accept.await.is_ok()
        });
        assert!(echoed);
    }

    #[test]
    fn several_workers_share_the_work_stealing_runtime() {
        let workers = Workers::start("workers", 2).unwrap();
        assert_eq!(workers.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(
            run(&workers, async { std::thread::current().name().map(String::from) }).as_deref(),
            Some("workers")
        );
    }

    #[test]
    fn stopping_drops_the_tasks_without_waiting_for_them() {
        for threads in [1, 2] {
            let workers = Workers::start("stopping", threads).unwrap();
            let (held, released) = mpsc::channel::<()>();
            let started = run(&workers, async move {
                // Holds its sender until dropped: never sends.
                tokio::spawn(async move {
                    let _held = held;
                    std::future::pending::<()>().await;
                });
                true
            });
            assert!(started);
            workers.shutdown_background();
            let ended = released.recv_timeout(Duration::from_secs(10));
            assert_eq!(ended, Err(mpsc::RecvTimeoutError::Disconnected), "{threads} worker(s)");
        }
    }
}
