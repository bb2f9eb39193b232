//! A request that waits for an Argon2 verification (or a credit or rate limit lease from the
//! store) without blocking its worker: the wait runs as a task of nginx's thread pool
//! (`default`), the worker goes on serving other connections, and when the task is done nginx
//! posts its completion event to the worker, which runs the request's phases again; the
//! access handler then decides on the newest table with the answer.
//!
//! The pool thread only waits: Argon2 itself runs on keygate's hash threads, whose number and
//! failure throttle the config sets, as in the sidecar. While the task is out the request is
//! `blocked`, which keeps nginx from freeing it even if its client goes away.

use std::ffi::c_void;

use keygate_authz::Pending;
use ngx::ffi::{
    NGX_OK, ngx_event_t, ngx_http_request_t, ngx_http_run_posted_requests, ngx_int_t, ngx_log_t,
    ngx_thread_task_alloc, ngx_thread_task_post, ngx_thread_task_t,
};

use crate::ctx::{Ctx, State};
use crate::worker::Worker;

/// One wait: what to verify, then what came back.
struct Job {
    worker: &'static Worker,
    pending: Option<Pending>,
    result: Option<(Pending, bool)>,
}

/// The task could not be handed to the thread pool.
#[derive(Debug)]
pub struct NotPosted;

/// Parks `r` until `pending` is verified. On success the access handler returns `NGX_AGAIN`.
///
/// # Safety
/// `r` is a live main request in its access phase, on its worker; `ctx` is its state.
pub unsafe fn park(
    r: *mut ngx_http_request_t,
    ctx: &mut Ctx,
    worker: &'static Worker,
    pending: Pending,
) -> Result<(), NotPosted> {
    let pool = crate::module::thread_pool();
    if pool.is_null() {
        return Err(NotPosted);
    }
    // SAFETY: the caller's contract; the task lives in the request's pool, which outlives it
    // (the request is blocked until the completion event has run).
    unsafe {
        let task = ngx_thread_task_alloc((*r).pool, size_of::<*mut Job>());
        if task.is_null() {
            return Err(NotPosted);
        }
        let job = Box::into_raw(Box::new(Job {
            worker,
            pending: Some(pending),
            result: None,
        }));
        (*task).ctx.cast::<*mut Job>().write(job);
        (*task).handler = Some(run);
        (*task).event.handler = Some(done);
        (*task).event.data = r.cast();
        (*task).event.log = (*(*r).connection).log;
        if ngx_thread_task_post(pool, task) != NGX_OK as ngx_int_t {
            drop(Box::from_raw(job));
            return Err(NotPosted);
        }
        let main = (*r).main;
        (*main).set_blocked((*main).blocked() + 1);
    }
    ctx.state = State::Waiting;
    Ok(())
}

/// The task, on a thread of nginx's pool: hands the verification to keygate and waits.
unsafe extern "C" fn run(data: *mut c_void, _log: *mut ngx_log_t) {
    crate::guard("verification task", (), || {
        // SAFETY: `data` is the task's ctx, holding the job `park` wrote; nginx runs the task
        // on one thread and posts its event only after this returns.
        let job = unsafe { &mut **data.cast::<*mut Job>() };
        let Some(pending) = job.pending.take() else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        job.worker.engine.verify(pending, move |p, ok| {
            let _ = tx.send((p, ok));
        });
        // Nothing back (keygate's pool is gone): the access handler refuses the request.
        job.result = rx.recv().ok();
    })
}

/// The task's completion event, on the worker: lets the request run its phases again.
unsafe extern "C" fn done(ev: *mut ngx_event_t) {
    // SAFETY: `ev` is the event inside the task `park` posted; its data is the request, kept
    // alive by `blocked` until now.
    unsafe {
        let task = ev
            .cast::<u8>()
            .sub(std::mem::offset_of!(ngx_thread_task_t, event))
            .cast::<ngx_thread_task_t>();
        let job = Box::from_raw(*(*task).ctx.cast::<*mut Job>());
        let r = (*ev).data.cast::<ngx_http_request_t>();
        let c = (*r).connection;
        let main = (*r).main;
        (*main).set_blocked((*main).blocked().saturating_sub(1));
        crate::guard("verification done", (), || {
            let mut job = job;
            if let Some(ctx) = crate::ctx::find(&*r) {
                ctx.state = State::Resumed(job.result.take());
            }
        });
        // The phases run again (or, if nginx gave up on the request meanwhile, its
        // finalizer); either may free the request, so nothing of it is read after this.
        if let Some(resume) = (*r).write_event_handler {
            resume(r);
        }
        ngx_http_run_posted_requests(c);
    }
}
