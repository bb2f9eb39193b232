//! A request's headers as nginx holds them (`r->headers_in.headers`, a list of parts), read by
//! the core through [`Headers`], and rewritten on allow: identity headers set (a client-sent
//! value replaced, a repeated one dropped), the ones keygate does not set and the credentials
//! removed, so that every module after the access phase (the proxy, fastcgi, `$http_…`)
//! sees only what keygate decided.
//!
//! nginx has no way to delete a list element, and its readers assume that no part after the
//! first is empty, so a rewrite builds the list afresh in the request's pool (one allocation;
//! none when nothing is to change). Fields that point at elements (`headers_in.authorization`,
//! `.host`…) are moved to the new copies, or cleared for a removed header; the old copies stay
//! in the pool untouched, so any other pointer into them still reads what it read before.

use std::ffi::c_void;

use keygate_core::request::{HeaderValue, Headers};
use ngx::ffi::{
    NGX_OK, ngx_hash_find, ngx_http_core_main_conf_t, ngx_http_core_module, ngx_http_header_t,
    ngx_http_request_t, ngx_list_init, ngx_list_part_t, ngx_list_push, ngx_list_t, ngx_pnalloc,
    ngx_str_t, ngx_table_elt_t,
};

use crate::worker::Name;

/// nginx's hash of a lowercase header name (`ngx_hash_key`), as its parser stores in
/// `ngx_table_elt_t.hash`.
pub fn hash(lower: &[u8]) -> usize {
    lower.iter().fold(0usize, |k, c| {
        k.wrapping_mul(31).wrapping_add(usize::from(*c))
    })
}

/// Bytes of an nginx string.
///
/// # Safety
/// `s` points at `len` readable bytes (or `len` is 0) for `'a`.
pub unsafe fn bytes<'a>(s: &ngx_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(s.data, s.len) }
    }
}

/// Every element of `list`, part by part.
///
/// # Safety
/// `list` is a valid, initialized header list that is not changed while iterating.
unsafe fn elements(list: &ngx_list_t) -> impl Iterator<Item = &ngx_table_elt_t> {
    let mut part: *const ngx_list_part_t = &list.part;
    std::iter::from_fn(move || {
        // SAFETY: the caller's contract: parts and their elements are valid.
        unsafe {
            while !part.is_null() {
                let p = &*part;
                part = p.next;
                if p.nelts > 0 {
                    let elts = p.elts.cast::<ngx_table_elt_t>();
                    return Some(std::slice::from_raw_parts(elts, p.nelts));
                }
            }
            None
        }
    })
    .flatten()
}

/// The lowercase name of an element: nginx's parser fills `lowcase_key` for every header.
///
/// # Safety
/// `h` is an element of a request's header list.
unsafe fn lower_name(h: &ngx_table_elt_t) -> &[u8] {
    if h.lowcase_key.is_null() {
        return &[];
    }
    // SAFETY: `lowcase_key` holds `key.len` bytes.
    unsafe { std::slice::from_raw_parts(h.lowcase_key, h.key.len) }
}

/// The request's headers, for the core.
pub struct NginxHeaders<'a> {
    list: &'a ngx_list_t,
}

impl<'a> NginxHeaders<'a> {
    /// # Safety
    /// `r` is a live request whose headers are not changed while the value is used.
    pub unsafe fn of(r: &'a ngx_http_request_t) -> NginxHeaders<'a> {
        NginxHeaders {
            list: &r.headers_in.headers,
        }
    }
}

impl Headers for NginxHeaders<'_> {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut found = HeaderValue::Absent;
        // SAFETY: `of`'s contract.
        for h in unsafe { elements(self.list) } {
            // SAFETY: an element of the request's list.
            if unsafe { lower_name(h) } == name.as_bytes() {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                // SAFETY: the value lives as long as the request's pool.
                found = HeaderValue::One(unsafe { bytes(&h.value) });
            }
        }
        found
    }
}

/// The rewrite could not allocate from the request's pool.
#[derive(Debug)]
pub struct NoMemory;

/// Most headers [`apply`] sets at once (the four identity headers and a key's metadata).
pub const MAX_SET: usize = 4 + keygate_core::meta::MAX_ENTRIES;

/// Most headers [`apply`] removes without rebuilding the list.
const MAX_DROPPED: usize = 8;

/// What becomes of an element.
enum Fate {
    Keep,
    Set(usize),
    Drop,
}

/// Applies changes to the request's headers: each name of `set` set to its value (as its only
/// occurrence) or removed (`None`), every name of `remove` removed, and every other name
/// under `drop_prefix` removed. Does nothing when no header is to change. Allocates from the request's pool only (a request is answered in
/// microseconds: a heap allocation and its free would be a good part of that).
///
/// The common allow (a credential to remove, identity headers to add) is done in place: a
/// value the client sent for an identity header is replaced, and each removed header's slot
/// takes a header to add. The list is rebuilt only when more go than come.
///
/// # Safety
/// `r` is a live main request on its worker; the names outlive it (a worker's [`Name`]s
/// live as long as the process); `set` has at most [`MAX_SET`] entries (the rest are ignored).
pub unsafe fn apply(
    r: &mut ngx_http_request_t,
    set: &[(&Name, Option<&str>)],
    remove: &[Name],
    drop_prefix: Option<&str>,
) -> Result<(), NoMemory> {
    let set = &set[..set.len().min(MAX_SET)];
    let under = |name: &[u8]| drop_prefix.is_some_and(|p| keygate_core::meta::is_reserved(name, p));
    let fate = |h: &ngx_table_elt_t| {
        // SAFETY: an element of the request's list.
        let name = unsafe { lower_name(h) };
        if let Some(i) = set.iter().position(|(n, _)| n.lower.as_bytes() == name) {
            Fate::Set(i)
        } else if remove.iter().any(|n| n.lower.as_bytes() == name) || under(name) {
            Fate::Drop
        } else {
            Fate::Keep
        }
    };
    // SAFETY: the caller's contract.
    unsafe {
        let adds = set.iter().any(|(_, v)| v.is_some());
        // The common case on every request: no client-sent identity header to strip.
        if !adds && elements(&r.headers_in.headers).all(|h| matches!(fate(h), Fate::Keep)) {
            return Ok(());
        }
        let mut values = [None; MAX_SET];
        let mut keys = [None; MAX_SET];
        for (i, (n, v)) in set.iter().enumerate() {
            if let Some(v) = v {
                values[i] = Some(pool_str(r, v.as_bytes())?);
                if !n.stable {
                    keys[i] = Some(pool_str(r, n.lower.as_bytes())?);
                }
            }
        }
        // Replaced in place: the first element of each name set to a value.
        let mut replaced: [*mut ngx_table_elt_t; MAX_SET] = [std::ptr::null_mut(); MAX_SET];
        let mut dropped = [std::ptr::null_mut::<ngx_table_elt_t>(); MAX_DROPPED];
        let mut n_dropped = 0;
        let mut count = 0;
        for h in element_ptrs(&r.headers_in.headers) {
            count += 1;
            match fate(&*h) {
                Fate::Keep => {}
                Fate::Set(i) if replaced[i].is_null() && values[i].is_some() => {
                    (*h).value = values[i].unwrap_or((*h).value);
                    replaced[i] = h;
                }
                _ => {
                    if n_dropped < MAX_DROPPED {
                        dropped[n_dropped] = h;
                    }
                    n_dropped += 1;
                }
            }
        }
        let pending: usize = (0..set.len())
            .filter(|i| replaced[*i].is_null() && values[*i].is_some())
            .count();
        // Dropped elements are reused as slots only when all of them were kept track of.
        if n_dropped <= pending && n_dropped <= MAX_DROPPED {
            let mut slots = dropped[..n_dropped].iter();
            for (i, (name, _)) in set.iter().enumerate() {
                let Some(v) = values[i].filter(|_| replaced[i].is_null()) else {
                    continue;
                };
                let to = match slots.next() {
                    Some(d) => {
                        relocate(r, *d, std::ptr::null_mut());
                        *d
                    }
                    None => ngx_list_push(&mut r.headers_in.headers).cast(),
                };
                if to.is_null() {
                    return Err(NoMemory);
                }
                to.write(identity(name, keys[i], v));
            }
            return Ok(());
        }
        rebuild(r, count + pending, |h| match fate(h) {
            Fate::Keep => true,
            Fate::Set(i) => std::ptr::eq(replaced[i], h),
            Fate::Drop => false,
        })?;
        for (i, (name, _)) in set.iter().enumerate() {
            let Some(v) = values[i].filter(|_| replaced[i].is_null()) else {
                continue;
            };
            let to = ngx_list_push(&mut r.headers_in.headers).cast::<ngx_table_elt_t>();
            // Room for `count + pending` was made: the push does not allocate.
            to.write(identity(name, keys[i], v));
        }
        Ok(())
    }
}

/// A header keygate sets: its name is the worker's (`stable`) or the pool's copy `key`.
fn identity(name: &Name, key: Option<ngx_str_t>, value: ngx_str_t) -> ngx_table_elt_t {
    let key = key.unwrap_or(ngx_str_t {
        len: name.lower.len(),
        data: name.lower.as_ptr().cast_mut(),
    });
    ngx_table_elt_t {
        hash: name.hash,
        key,
        value,
        lowcase_key: key.data,
    }
}

/// Builds the list afresh with room for `room` elements, keeping the elements `keep` says so.
unsafe fn rebuild(
    r: &mut ngx_http_request_t,
    room: usize,
    keep: impl Fn(&ngx_table_elt_t) -> bool,
) -> Result<(), NoMemory> {
    // SAFETY: the caller's contract; the old elements stay valid (the pool keeps them) while
    // the list is rebuilt from a copy of its head.
    unsafe {
        let old = std::ptr::read(&r.headers_in.headers);
        let list: *mut ngx_list_t = &mut r.headers_in.headers;
        let size = size_of::<ngx_table_elt_t>();
        if ngx_list_init(list, r.pool, room.max(1), size) != NGX_OK as isize {
            std::ptr::write(list, old);
            return Err(NoMemory);
        }
        for h in element_ptrs(&old) {
            if !keep(&*h) {
                relocate(r, h, std::ptr::null_mut());
                continue;
            }
            let to = ngx_list_push(list).cast::<ngx_table_elt_t>();
            to.write(*h);
            relocate(r, h, to);
        }
        Ok(())
    }
}

/// Pointers to every element of `list`, part by part.
unsafe fn element_ptrs(list: &ngx_list_t) -> impl Iterator<Item = *mut ngx_table_elt_t> {
    // SAFETY: the caller's contract, as for `elements`.
    unsafe { elements(list) }.map(|h| (h as *const ngx_table_elt_t).cast_mut())
}

/// A copy of `b` in the request's pool.
unsafe fn pool_str(r: &ngx_http_request_t, b: &[u8]) -> Result<ngx_str_t, NoMemory> {
    // SAFETY: the pool of a live request; the copy fits the allocation.
    unsafe {
        let data = ngx_pnalloc(r.pool, b.len().max(1)).cast::<u8>();
        if data.is_null() {
            return Err(NoMemory);
        }
        std::ptr::copy_nonoverlapping(b.as_ptr(), data, b.len());
        Ok(ngx_str_t { len: b.len(), data })
    }
}

/// Points the `headers_in` field nginx's parser set to `from` (`authorization`, `host`…), if
/// any, at `to` (null: the header is gone).
unsafe fn relocate(
    r: &mut ngx_http_request_t,
    from: *mut ngx_table_elt_t,
    to: *mut ngx_table_elt_t,
) {
    // SAFETY: the core module's main conf of a live request; the known-header hash maps a
    // name to the offset of its field in `headers_in`, a pointer for every single-valued
    // header (a multi-valued one's array never equals an element's address).
    unsafe {
        let cmcf =
            (*r.main_conf.add(ngx_http_core_module.ctx_index)).cast::<ngx_http_core_main_conf_t>();
        if cmcf.is_null() || (*from).lowcase_key.is_null() {
            return;
        }
        let known = ngx_hash_find(
            &mut (*cmcf).headers_in_hash,
            (*from).hash,
            (*from).lowcase_key,
            (*from).key.len,
        )
        .cast::<ngx_http_header_t>();
        if known.is_null() {
            return;
        }
        let base = (&raw mut r.headers_in).cast::<u8>();
        let field = base.add((*known).offset).cast::<*mut c_void>();
        if *field == from.cast() {
            *field = to.cast();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn the_hash_is_nginxs() {
        // ngx_hash_key("host") from nginx: ((('h'*31+'o')*31+'s')*31+'t').
        let want = ((104usize * 31 + 111) * 31 + 115) * 31 + 116;
        assert_eq!(hash(b"host"), want);
    }
}
