//! The event loop that owns the machine and the ioreq engine.
//!
//! One thread owns both, so device state needs no locks on the request path. Other threads
//! (monitor, QMP, tests) run code on it through a [`LoopHandle`]: a closure is queued and an
//! eventfd wakes the loop, which runs it between requests and sends the result back.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use thiserror::Error;

use crate::device::IoHandler;
use crate::ioreq::Engine;

type Job<M> = Box<dyn FnOnce(&mut M, &mut Engine) + Send>;

enum Msg<M> {
    Run(Job<M>),
    Stop,
}

/// Consecutive event-channel failures tolerated before the guest is shut down.
pub const MAX_EVTCHN_FAILURES: u32 = 100;

/// Why the loop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// [`LoopHandle::stop`] was called.
    Stopped,
    /// A termination signal arrived (number).
    Signal(i32),
}

/// The loop is gone (it stopped or panicked).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the device-model event loop is not running")]
pub struct LoopGone;

/// Errors that end the loop.
#[derive(Debug, Error)]
pub enum LoopError {
    /// poll failed.
    #[error("poll: {0}")]
    Poll(#[from] nix::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] crate::ioreq::EngineError),
}

/// Queues work onto the loop thread.
pub struct LoopHandle<M> {
    tx: Sender<Msg<M>>,
    wake: Arc<EventFd>,
}

impl<M> Clone for LoopHandle<M> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), wake: self.wake.clone() }
    }
}

impl<M: 'static> LoopHandle<M> {
    /// Runs `f` on the loop thread and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, &mut Engine) -> R + Send + 'static,
    ) -> Result<R, LoopGone> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job<M> = Box::new(move |m, e| {
            let r = f(m, e);
            // Effects the job produced are applied before the caller sees the result.
            e.apply_effects();
            let _ = rtx.send(r);
        });
        self.tx.send(Msg::Run(job)).map_err(|_| LoopGone)?;
        let _ = self.wake.write(1);
        rrx.recv().map_err(|_| LoopGone)
    }

    /// Asks the loop to stop (it finishes the request in hand first).
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        let _ = self.wake.write(1);
    }
}

/// The loop's inputs.
pub struct EventLoop<M> {
    rx: Receiver<Msg<M>>,
    wake: Arc<EventFd>,
}

/// Creates a loop and its handle.
pub fn event_loop<M>() -> std::io::Result<(EventLoop<M>, LoopHandle<M>)> {
    let wake =
        Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(std::io::Error::from)?);
    let (tx, rx) = mpsc::channel();
    Ok((EventLoop { rx, wake: wake.clone() }, LoopHandle { tx, wake }))
}

impl<M: IoHandler> EventLoop<M> {
    /// Serves until stopped or signalled. `signals` is a signalfd-like fd that becomes readable
    /// on a termination signal; `read_signal` reads it and returns the signal number.
    pub fn run(
        self,
        machine: &mut M,
        engine: &mut Engine,
        signals: Option<(BorrowedFd<'_>, &dyn Fn() -> Option<i32>)>,
    ) -> Result<ExitReason, LoopError> {
        info!("serving ioreqs for domain {}", engine.server().domid());
        let mut failures = 0u32;
        loop {
            let evt_fd = engine.server().dm().sys().clone();
            let mut fds = vec![
                PollFd::new(evt_fd.evtchn_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            if let Some((sfd, _)) = &signals {
                fds.push(PollFd::new(*sfd, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::try_from(Duration::from_millis(1000)).unwrap_or(PollTimeout::NONE)) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            let (ev, wk, sg) = (ready(0), ready(1), ready(2));
            drop(fds);
            if ev {
                match engine.process(machine) {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        // A read error on the event channel (EINTR storms, a transient EFBIG
                        // after an overflow...) must not leave vCPUs blocked forever: reset the
                        // ring and keep serving; if it persists, shut the guest down and stop.
                        failures += 1;
                        crate::guest_error!("event channel: {e} (failure {failures})");
                        let _ = engine.server().dm().sys().evtchn_reset();
                        if failures >= MAX_EVTCHN_FAILURES {
                            log::error!("event channel keeps failing; shutting the guest down (crash)");
                            let _ = engine.server().dm().remote_shutdown(xen_bindings::dm_op::SHUTDOWN_CRASH);
                            return Err(e.into());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                        // Requests whose events were lost are still READY in their slots.
                        engine.rescan(machine);
                    }
                }
            } else {
                // Xen also expects the buffered ring to be polled while requests flow.
                engine.drain_buffered(machine);
            }
            if wk {
                let _ = self.wake.read();
                while let Ok(msg) = self.rx.try_recv() {
                    match msg {
                        Msg::Run(job) => {
                            job(machine, engine);
                            engine.apply_effects();
                        }
                        Msg::Stop => {
                            debug!("event loop: stop requested");
                            return Ok(ExitReason::Stopped);
                        }
                    }
                }
            }
            if sg {
                if let Some((_, read)) = &signals {
                    if let Some(sig) = read() {
                        warn!("received signal {sig}: shutting down");
                        return Ok(ExitReason::Signal(sig));
                    }
                }
            }
        }
    }
}

impl<M> EventLoop<M> {
    /// Waits for stop or a signal without serving ioreqs (libxl's probe run). Queued jobs are
    /// refused (their callers see [`LoopGone`]).
    pub fn run_idle(
        self,
        signals: Option<(BorrowedFd<'_>, &dyn Fn() -> Option<i32>)>,
    ) -> Result<ExitReason, LoopError> {
        loop {
            let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            if let Some((sfd, _)) = &signals {
                fds.push(PollFd::new(*sfd, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            let (wk, sg) = (ready(0), ready(1));
            drop(fds);
            if wk {
                let _ = self.wake.read();
                while let Ok(msg) = self.rx.try_recv() {
                    if let Msg::Stop = msg {
                        return Ok(ExitReason::Stopped);
                    }
                }
            }
            if sg {
                if let Some((_, read)) = &signals {
                    if let Some(sig) = read() {
                        return Ok(ExitReason::Signal(sig));
                    }
                }
            }
        }
    }
}

/// What a loop thread returns: the machine, the engine and why the loop ended.
pub type LoopThread<M> = std::thread::JoinHandle<(M, Engine, Result<ExitReason, LoopError>)>;

/// Runs `machine` and `engine` on a new thread. The thread returns both when the loop ends.
pub fn spawn<M: IoHandler + Send + 'static>(
    mut machine: M,
    mut engine: Engine,
) -> std::io::Result<(LoopHandle<M>, LoopThread<M>)> {
    let (lp, handle) = event_loop::<M>()?;
    let join = std::thread::Builder::new().name("q35dm-ioreq".into()).spawn(move || {
        let r = lp.run(&mut machine, &mut engine, None);
        (machine, engine, r)
    })?;
    Ok((handle, join))
}
