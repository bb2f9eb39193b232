//! One request through the module: the request headers become the core's request, the
//! authorizer decides, and the decision goes back as Envoy calls: on allow the identity headers
//! are set (a client-sent value replaced, an unset one removed), the credential headers removed
//! and the identity put in dynamic metadata under `keygate`, and the tightest rate limit's
//! `RateLimit` fields kept for the response to the client; on deny a local reply with keygate's
//! status, JSON body, `WWW-Authenticate` and, for a 429, `Retry-After` and the limit's fields.
//!
//! An Argon2 key without a cached answer is verified on a hash thread while the request waits
//! (headers and body held back), and a key whose credit lease is empty waits the same way
//! while a new lease is taken from the store; the thread that did it wakes the stream through
//! Envoy's scheduler and the decision is made again, on the worker, from the headers Envoy
//! still holds.
//!
//! A denial made in `request_headers` is answered on the worker's next event-loop turn, through
//! the scheduler too: a local reply sent from inside that hook leaves Envoy's HTTP/1 codec with
//! a request it has not finished reading, so it holds a `Connection: close` request's
//! connection open for its delayed-close timeout (1 s) after the answer.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keygate_authz::{Decision, Frontend, Pending, Step};
use keygate_core::decide::{Allow, Denial};
use keygate_core::request::Request;

use crate::abi::{self, FilterEnvoyPtr, ModuleBuffer, ModuleKeyValue, SchedulerPtr};
use crate::config::FilterConfig;
use crate::headers::EnvoyHeaders;
use crate::reply::deny;

/// The namespace of the identity in dynamic metadata.
const METADATA_NAMESPACE: &[u8] = b"keygate";

/// The scheduler of a request waiting for its verification, shared with the hash thread.
struct Waiting {
    /// `None` once deleted (the event came, or the stream went first).
    scheduler: Option<SendPtr>,
    result: Option<(Pending, bool)>,
}

struct SendPtr(SchedulerPtr);
// SAFETY: Envoy allows a scheduler's commit and delete from any thread; the pointer is used
// only under the `Waiting` lock, and deleted exactly once.
unsafe impl Send for SendPtr {}

/// One stream's filter. Its hooks take `&self`: Envoy may run one hook inside another (a
/// local reply sent while `continue_decoding` or `send_response` is on the stack runs
/// `response_headers`), so no hook holds a unique borrow of the filter, and no cell's borrow
/// is held across a call into Envoy.
pub struct Filter {
    config: Arc<FilterConfig>,
    started: Cell<Instant>,
    waiting: RefCell<Option<Arc<Mutex<Waiting>>>>,
    /// A denial made in `request_headers`, answered from the next event-loop turn.
    deferred: RefCell<Option<(Denial, SendPtr)>>,
    /// The `RateLimit` fields of an allowed request, added to its response.
    limit_fields: RefCell<Vec<(&'static str, String)>>,
}

impl Filter {
    pub fn new(config: Arc<FilterConfig>) -> Filter {
        Filter {
            config,
            started: Cell::new(Instant::now()),
            waiting: RefCell::new(None),
            deferred: RefCell::new(None),
            limit_fields: RefCell::new(Vec::new()),
        }
    }

    /// `request_headers`: decide now, or park the request until a hash thread has verified.
    pub fn on_request_headers(&self, envoy: FilterEnvoyPtr) -> u32 {
        self.started.set(Instant::now());
        let headers = EnvoyHeaders::read(envoy);
        let step = with_request(&headers, |r| {
            self.config.module.engine.decide(r, Frontend::EnvoyModule)
        });
        self.step(envoy, &headers, step, false)
    }

    /// Answers a decision, or parks the request until its verification (or credit lease) is
    /// done. `resume`: the request is parked already.
    fn step(
        &self,
        envoy: FilterEnvoyPtr,
        headers: &EnvoyHeaders<'_>,
        step: Step,
        resume: bool,
    ) -> u32 {
        match step {
            Step::Done(d) => self.answer(envoy, headers, d, resume),
            Step::Verify(pending) => {
                // SAFETY: on the worker, inside the stream's hook.
                let scheduler =
                    unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(envoy) };
                let waiting = Arc::new(Mutex::new(Waiting {
                    scheduler: Some(SendPtr(scheduler)),
                    result: None,
                }));
                *self.waiting.borrow_mut() = Some(waiting.clone());
                self.config.module.engine.verify(pending, move |p, ok| {
                    let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                    w.result = Some((p, ok));
                    if let Some(s) = &w.scheduler {
                        // SAFETY: the scheduler is not deleted while the lock is held.
                        unsafe {
                            abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(s.0, 1)
                        };
                    }
                });
                abi::HEADERS_STOP_ALL_AND_BUFFER
            }
        }
    }

    /// `scheduled`: the verification is done; decide again and let the request go or refuse it.
    pub fn on_scheduled(&self, envoy: FilterEnvoyPtr) {
        let deferred = self.deferred.borrow_mut().take();
        if let Some((d, s)) = deferred {
            // SAFETY: made in request_headers, deleted once.
            unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(s.0) };
            deny(envoy, &d);
            return;
        }
        let waiting = self.waiting.borrow_mut().take();
        let Some(waiting) = waiting else {
            return;
        };
        let result = {
            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
            delete_scheduler(&mut w);
            w.result.take()
        };
        let Some((pending, ok)) = result else {
            return;
        };
        let headers = EnvoyHeaders::read(envoy);
        let step = with_request(&headers, |r| {
            self.config
                .module
                .engine
                .decide_verified(r, Frontend::EnvoyModule, &pending, ok)
        });
        self.step(envoy, &headers, step, true);
    }

    /// Applies a decision. `resume`: the request was parked and must be let go explicitly.
    fn answer(
        &self,
        envoy: FilterEnvoyPtr,
        headers: &EnvoyHeaders<'_>,
        d: Decision,
        resume: bool,
    ) -> u32 {
        let micros = self.started.get().elapsed().as_micros() as u64;
        self.config.stats.latency(envoy, micros);
        match d {
            Ok(a) => {
                self.allow(envoy, headers, &a);
                if let Some(l) = &a.limit {
                    *self.limit_fields.borrow_mut() = l.headers(false);
                }
                if resume {
                    // SAFETY: on the worker, in the stream's hook; nothing of this filter is
                    // borrowed across the call (Envoy may run its other hooks inside it).
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
                    };
                }
                abi::HEADERS_CONTINUE
            }
            Err(denial) if resume => {
                deny(envoy, &denial);
                abi::HEADERS_STOP_ITERATION
            }
            Err(denial) => {
                // SAFETY: on the worker, inside the stream's hook.
                let s =
                    unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(envoy) };
                // SAFETY: as above; any thread may commit.
                unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(s, 2) };
                *self.deferred.borrow_mut() = Some((denial, SendPtr(s)));
                abi::HEADERS_STOP_ALL_AND_BUFFER
            }
        }
    }

    /// `response_headers`: an allowed request's rate limit state, to the client.
    pub fn on_response_headers(&self, envoy: FilterEnvoyPtr) -> u32 {
        let fields = std::mem::take(&mut *self.limit_fields.borrow_mut());
        for (k, v) in fields {
            // SAFETY: on the worker, in the stream's hook; Envoy copies name and value.
            unsafe {
                abi::envoy_dynamic_module_callback_http_add_header(
                    envoy,
                    abi::RESPONSE_HEADER,
                    ModuleBuffer::of(k.as_bytes()),
                    ModuleBuffer::of(v.as_bytes()),
                );
            }
        }
        abi::HEADERS_CONTINUE
    }

    /// Sets the identity headers this key has, and removes the identity and credential headers
    /// the request carries that must not reach the upstream (each write costs Envoy a header
    /// map update: absent ones are not touched).
    fn allow(&self, envoy: FilterEnvoyPtr, headers: &EnvoyHeaders<'_>, a: &Allow) {
        let wire = &self.config.wire;
        let values = a.identity();
        let write = |name: &str, value: Option<&str>, present: bool| {
            let key = ModuleBuffer::of(name.as_bytes());
            let v = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
            // SAFETY: on the worker, in the stream's hook; Envoy copies name and value. A header
            // the request lacks is added (cheaper for Envoy than a replace); one it carries is
            // replaced, or removed (a null value).
            unsafe {
                if present {
                    abi::envoy_dynamic_module_callback_http_set_header(
                        envoy,
                        abi::REQUEST_HEADER,
                        key,
                        v,
                    );
                } else {
                    abi::envoy_dynamic_module_callback_http_add_header(
                        envoy,
                        abi::REQUEST_HEADER,
                        key,
                        v,
                    );
                }
            }
        };
        // Every read of the request's headers comes first: a write frees the entries Envoy
        // lent for the hook (a replaced or removed header's name and value), so `headers`
        // must not be looked at once one is made.
        let identity_present = wire.identity.each_ref().map(|n| headers.has(n));
        // One bit per credential header the request carries (the config allows at most 64
        // schemes, so at most 64 such headers).
        let credentials = (wire.credentials.iter().enumerate())
            .filter(|(_, n)| headers.has(n))
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let meta = a.key.meta();
        let mut spoofed = Vec::new();
        let mut meta_headers = Vec::new();
        if let Some(prefix) = wire.meta_prefix.as_deref() {
            let names = headers.entries().map(|(k, _)| k);
            for n in keygate_core::meta::spoofed(names, prefix, meta) {
                if let Ok(n) = std::str::from_utf8(n) {
                    spoofed.push(n.to_owned());
                }
            }
            for (k, v) in meta.into_iter().flatten() {
                let name = keygate_core::meta::header_name(prefix, k);
                let present = headers.has(&name);
                meta_headers.push((name, k, v.as_str(), present));
            }
        }

        for (i, name) in wire.identity.iter().enumerate() {
            if values[i].is_some() || identity_present[i] {
                write(name, values[i], identity_present[i]);
            }
        }
        for (i, name) in wire.credentials.iter().enumerate() {
            if credentials & 1 << i != 0 {
                write(name, None, true);
            }
        }
        for name in &spoofed {
            write(name, None, true);
        }
        let mut meta_fields = Vec::with_capacity(meta_headers.len());
        for (name, k, v, present) in &meta_headers {
            write(name, Some(v), *present);
            meta_fields.push((format!("meta.{k}"), *v));
        }
        let fields = ["key_id", "account", "scopes", "plan"];
        let kv = |k: &str, v: &str| ModuleKeyValue {
            key_ptr: k.as_ptr(),
            key_len: k.len(),
            value_ptr: v.as_ptr(),
            value_len: v.len(),
        };
        let entries: Vec<ModuleKeyValue> = fields
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some(kv(k, v?)))
            .chain(meta_fields.iter().map(|(k, v)| kv(k, v)))
            .collect();
        // SAFETY: as above; one call for the whole identity (each metadata write merges a
        // protobuf Struct in Envoy).
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
                envoy,
                ModuleBuffer::of(METADATA_NAMESPACE),
                entries.as_ptr(),
                entries.len(),
            );
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if let Some((_, s)) = self.deferred.get_mut().take() {
            // SAFETY: made in request_headers, deleted once.
            unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(s.0) };
        }
        // The stream went before its verification's event ran: the scheduler still needs
        // deleting, and the hash thread must find it gone.
        if let Some(w) = self.waiting.get_mut().take() {
            delete_scheduler(&mut w.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

fn delete_scheduler(w: &mut Waiting) {
    if let Some(s) = w.scheduler.take() {
        // SAFETY: deleted once (taken out of the option under the lock).
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(s.0) };
    }
}

/// Runs `f` on the core's request made from Envoy's headers.
fn with_request<'h, T>(
    headers: &EnvoyHeaders<'h>,
    f: impl FnOnce(&Request<'_, EnvoyHeaders<'h>>) -> T,
) -> T {
    let text = |name: &str| headers.one(name).and_then(|v| std::str::from_utf8(v).ok());
    let r = Request {
        method: text(":method").unwrap_or(""),
        // A path that is not UTF-8 is not a path: no route takes it.
        path: text(":path").unwrap_or(""),
        host: text(":authority"),
        headers,
    };
    f(&r)
}
