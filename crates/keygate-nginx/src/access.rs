//! The access phase: one request through keygate. nginx's request becomes the core's request
//! (method and URI as the client sent them, `$host`, the header list), the authorizer
//! decides, and the decision goes back as nginx calls: on allow the headers are rewritten
//! ([`crate::headers`]) and the request goes on to its content handler; on deny keygate's
//! answer is sent ([`crate::reply`]); a request that needs Argon2 (or a lease from the store)
//! is parked ([`crate::park`]) and decided again when its wait is over.
//!
//! Subrequests are not checked: nginx runs no access phase for them (for any access module),
//! so they belong to their main request's check. A location answered by `return` or `rewrite … break` is finished before the
//! access phase and is never checked.

use keygate_authz::{Decision, Frontend, Step};
use keygate_core::decide::{Allow, Denial, Reason};
use keygate_core::request::Request;
use ngx::ffi::{
    NGX_AGAIN, NGX_DECLINED, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_OK, ngx_http_request_t, ngx_int_t,
};

use crate::ctx::{self, Ctx, State};
use crate::headers::{self, NginxHeaders, NoMemory, bytes};
use crate::worker::{self, Name, Worker};

/// The access handler's work for `r`, a main request; `enabled`: its location has
/// `keygate on`. Identity headers a client sent are removed on every location (the
/// application may trust them wherever they come from); only enabled ones are checked.
///
/// # Safety
/// `r` is a live main request in its access phase, on its worker.
pub unsafe fn check(r: *mut ngx_http_request_t, enabled: bool) -> ngx_int_t {
    // SAFETY: the caller's contract; the state is the request's, used only here.
    unsafe {
        let pass = if enabled { NGX_OK } else { NGX_DECLINED as u32 } as ngx_int_t;
        let state = ctx::find(&*r).map(|c| &mut c.state);
        match state {
            // Allowed before an internal redirect: its headers are keygate's already.
            Some(State::Allowed) => return pass,
            // Woken before the task is done (a write event on the connection).
            Some(State::Waiting) => return NGX_AGAIN as ngx_int_t,
            _ => {}
        }
        let Some(w) = worker::get() else {
            return if enabled {
                // This worker's keygate did not start (the error log says why): as before a
                // first load.
                crate::reply::deny(r, &not_ready())
            } else {
                NGX_DECLINED as ngx_int_t
            };
        };
        if !enabled {
            // Not checked, but a client's identity and metadata headers still never pass. (A
            // checked request's allow rewrites them; a refused one goes nowhere.)
            let prefix = w.wire.meta_prefix.as_deref();
            if headers::apply(&mut *r, &[], &w.wire.identity, prefix).is_err() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            return NGX_DECLINED as ngx_int_t;
        }
        let Ok(ctx) = ctx::get_or_create(&*r) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let step = match std::mem::replace(&mut ctx.state, State::Fresh) {
            State::Resumed(Some((pending, ok))) => with_request(&*r, |q| {
                w.engine
                    .decide_verified(q, Frontend::NginxModule, &pending, ok)
            }),
            // The wait brought nothing back: nothing was verified.
            State::Resumed(None) => Step::Done(Err(unknown())),
            _ => with_request(&*r, |q| w.engine.decide(q, Frontend::NginxModule)),
        };
        match step {
            Step::Done(d) => answer(r, w, ctx, d),
            Step::Verify(pending) => match crate::park::park(r, ctx, w, pending) {
                Ok(()) => NGX_AGAIN as ngx_int_t,
                Err(_) => {
                    crate::log::log(
                        ngx::ffi::NGX_LOG_ERR,
                        "the thread pool refused a verification task; answering 503",
                    );
                    crate::reply::deny(r, &not_ready())
                }
            },
        }
    }
}

/// Applies a decision.
unsafe fn answer(r: *mut ngx_http_request_t, w: &Worker, ctx: &mut Ctx, d: Decision) -> ngx_int_t {
    // SAFETY: the caller's contract.
    unsafe {
        match d {
            Ok(a) => match allow(&mut *r, w, &a) {
                Ok(()) => {
                    ctx.state = State::Allowed;
                    if let Some(l) = &a.limit {
                        ctx.limit_fields = l.headers(false);
                    }
                    NGX_OK as ngx_int_t
                }
                // A request whose credential cannot be removed must not reach the upstream.
                Err(NoMemory) => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            },
            Err(denial) => crate::reply::deny(r, &denial),
        }
    }
}

/// Sets the identity headers this key has, removes the ones it has not and the credentials;
/// with a metadata prefix, sets the key's metadata headers and removes any other under it.
unsafe fn allow(r: &mut ngx_http_request_t, w: &Worker, a: &Allow) -> Result<(), NoMemory> {
    let wire = &w.wire;
    let [k, c, s, p] = &wire.identity;
    let [vk, vc, vs, vp] = a.identity();
    let prefix = wire.meta_prefix.as_deref();
    // Made per request only for a key with metadata.
    let meta: Vec<(Name, &str)> = match (prefix, a.key.meta()) {
        (Some(prefix), Some(m)) => m
            .iter()
            .map(|(key, v)| {
                (
                    Name::transient(&keygate_core::meta::header_name(prefix, key)),
                    v.as_str(),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let base = [(k, vk), (c, vc), (s, vs), (p, vp)];
    // SAFETY: the caller's contract; the worker's names live as long as it, the others are
    // copied into the request's pool.
    unsafe {
        if meta.is_empty() {
            return headers::apply(r, &base, &wire.credentials, prefix);
        }
        let mut set = base.to_vec();
        set.extend(meta.iter().map(|(n, v)| (n, Some(*v))));
        headers::apply(r, &set, &wire.credentials, prefix)
    }
}

/// Runs `f` on the core's request made from nginx's: the method and the URI (path and query)
/// as the client sent them, so that keygate authorizes what the upstream will be sent, and
/// the host nginx resolved (`$host` without its fallback to `server_name`).
unsafe fn with_request<T>(
    r: &ngx_http_request_t,
    f: impl FnOnce(&Request<'_, NginxHeaders<'_>>) -> T,
) -> T {
    // SAFETY: the caller's contract: the request's strings live in its pool.
    unsafe {
        let text = |s| std::str::from_utf8(bytes(s)).ok();
        let headers = NginxHeaders::of(r);
        let q = Request {
            method: text(&r.method_name).unwrap_or(""),
            // A URI that is not UTF-8 is not a path: no route takes it.
            path: text(&r.unparsed_uri).unwrap_or(""),
            host: text(&r.headers_in.server).filter(|h| !h.is_empty()),
            headers: &headers,
        };
        f(&q)
    }
}

fn not_ready() -> Denial {
    Denial {
        presented: false,
        ..Denial::new(Reason::NotReady, false)
    }
}

fn unknown() -> Denial {
    Denial::new(Reason::Unknown, false)
}

/// Whether the access phase may skip `r` (`NGX_DECLINED`): not a main request.
pub fn skip(r: &ngx_http_request_t) -> Option<ngx_int_t> {
    (!std::ptr::eq(r.main, r)).then_some(NGX_DECLINED as ngx_int_t)
}
