//! What keygate remembers about one request between its passes through the access phase and
//! until its response: whether it waits for a hash thread, what came back, whether it was
//! allowed, and the `RateLimit` fields its response gets.
//!
//! It is owned by the request's pool (a cleanup handler drops it), not by `r->ctx`: an
//! internal redirect (`try_files`, `error_page`, `rewrite … last`) clears `r->ctx` and runs
//! the access phase again on a request whose credential keygate has already removed, which
//! must not be refused, decided or counted a second time. The pool outlives redirects, so the
//! state is found again through the pool's cleanup list.

use std::ffi::c_void;

use keygate_authz::Pending;
use ngx::ffi::{ngx_http_request_t, ngx_palloc, ngx_pool_cleanup_add, ngx_pool_cleanup_t};

use crate::headers::NoMemory;

pub enum State {
    /// Not decided yet.
    Fresh,
    /// A hash thread (or a lease from the store) is being waited for.
    Waiting,
    /// The wait is over: what it brought (`None`: the thread pool lost the task).
    Resumed(Option<(Pending, bool)>),
    /// Allowed, its headers rewritten.
    Allowed,
}

pub struct Ctx {
    pub state: State,
    /// The tightest limit's `RateLimit` fields, for the response to the client.
    pub limit_fields: Vec<(&'static str, String)>,
}

// The pool aligns what it allocates to a word.
const _: () = assert!(align_of::<Ctx>() <= size_of::<usize>());

/// Drops a request's [`Ctx`] with its pool (which frees its memory).
unsafe extern "C" fn drop_ctx(data: *mut c_void) {
    crate::guard("request cleanup", (), || {
        if !data.is_null() {
            // SAFETY: written by `get_or_create` into the pool; the pool runs each cleanup
            // once.
            unsafe { std::ptr::drop_in_place(data.cast::<Ctx>()) };
        }
    })
}

fn slot(r: &ngx_http_request_t) -> *mut *mut c_void {
    // SAFETY: `r->ctx` has a slot for every HTTP module, ours included.
    unsafe { r.ctx.add(crate::module::ctx_index()) }
}

/// The request's state, if keygate has seen it.
///
/// # Safety
/// `r` is a live main request on its worker; the reference is not kept past the current
/// handler, and no other reference to the state is alive.
pub unsafe fn find<'a>(r: &ngx_http_request_t) -> Option<&'a mut Ctx> {
    // SAFETY: the caller's contract; the slot holds null or our Ctx, the cleanup list is the
    // pool's and ours is recognised by its handler.
    unsafe {
        let fast = *slot(r);
        if !fast.is_null() {
            return Some(&mut *fast.cast::<Ctx>());
        }
        let mut c: *mut ngx_pool_cleanup_t = (*r.pool).cleanup;
        while !c.is_null() {
            // Ours is told apart by its handler: one non-generic function, never inlined
            // into the pool (nginx calls it through the pointer).
            let ours = (*c)
                .handler
                .is_some_and(|h| std::ptr::fn_addr_eq(h, drop_ctx as unsafe extern "C" fn(_)));
            if ours && !(*c).data.is_null() {
                *slot(r) = (*c).data;
                return Some(&mut *(*c).data.cast::<Ctx>());
            }
            c = (*c).next;
        }
        None
    }
}

/// The request's state, made fresh the first time.
///
/// # Safety
/// As for [`find`].
pub unsafe fn get_or_create<'a>(r: &ngx_http_request_t) -> Result<&'a mut Ctx, NoMemory> {
    // SAFETY: the caller's contract.
    unsafe {
        if let Some(c) = find(r) {
            return Ok(c);
        }
        // In the request's pool rather than the heap: nothing to free per request.
        let ctx = ngx_palloc(r.pool, size_of::<Ctx>()).cast::<Ctx>();
        let cln = ngx_pool_cleanup_add(r.pool, 0);
        if ctx.is_null() || cln.is_null() {
            return Err(NoMemory);
        }
        ctx.write(Ctx {
            state: State::Fresh,
            limit_fields: Vec::new(),
        });
        (*cln).handler = Some(drop_ctx);
        (*cln).data = ctx.cast();
        *slot(r) = ctx.cast();
        Ok(&mut *ctx)
    }
}
