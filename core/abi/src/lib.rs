//! plinth-abi: the versioned C ABI between Plinth (the host) and external plugins
//! loaded from shared libraries, plus helpers for plugin authors.
//!
//! No Rust types cross the boundary, only `#[repr(C)]` structs and byte buffers
//! holding UTF-8 JSON, so host and plugin may be built by different compilers (or
//! written in C).
//!
//! A plugin exports one symbol, [`DECLARATION_SYMBOL`], a [`PluginDecl`]. The host
//! reads `abi_version` first and refuses any other version.
//!
//! Memory: every [`Buf`] is owned by the side that allocated it and must be given
//! back to that side's free function: buffers returned by `manifest` and `handle`
//! are freed by the host calling `decl.free`; buffers returned by a host callback
//! are freed by the plugin calling `host.free`. Request bytes passed into a call
//! are only borrowed for the length of that call.

use std::ffi::c_void;

/// Bumped on any incompatible change of the structs below.
pub const ABI_VERSION: u32 = 1;

/// The exported symbol's name (NUL-terminated for dlsym).
pub const DECLARATION_SYMBOL: &[u8] = b"plinth_plugin_declaration\0";

/// A byte buffer handed across the boundary (see the module docs for ownership).
#[repr(C)]
pub struct Buf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buf {
    /// Gives a vector away as a buffer; the allocating side frees it with [`Buf::free`].
    pub fn from_vec(mut v: Vec<u8>) -> Buf {
        let buf = Buf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        };
        std::mem::forget(v);
        buf
    }

    pub fn empty() -> Buf {
        Buf::from_vec(Vec::new())
    }

    /// Takes back a buffer this side allocated with [`Buf::from_vec`].
    ///
    /// # Safety
    /// `self` must come from `Buf::from_vec` in this same library, unmodified.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        // SAFETY: the caller guarantees ptr/len/cap describe a Vec we gave away.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// Reads a buffer the other side owns, without taking it.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes for the life of the returned slice.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees the buffer is valid for reads.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Frees a buffer allocated by this library (exported to the other side).
pub extern "C" fn free_buf(buf: Buf) {
    // SAFETY: only buffers from `Buf::from_vec` in this library reach this function.
    drop(unsafe { buf.into_vec() });
}

/// What the host hands to every call: one JSON callback and its free function.
///
/// `call(ctx, request)` takes a JSON request `{"op": ..., ...}` and returns a JSON
/// answer `{"ok": ...}` or `{"error": "..."}`. Operations (v1): `query`
/// `{sql, params}` and `execute` `{sql, params}` on the request's org-bound
/// connection; `flag` `{key}`; `audit` `{action, target_type?, target_id?, details?}`;
/// `event` `{name, payload}` (teams turns org events into activity items);
/// `enqueue` `{kind, payload}` (runs later as a `JOB` request to the same plugin).
#[repr(C)]
pub struct Host {
    pub ctx: *const c_void,
    pub call: extern "C" fn(ctx: *const c_void, request: *const u8, len: usize) -> Buf,
    pub free: extern "C" fn(Buf),
}

/// The one symbol a plugin exports.
#[repr(C)]
pub struct PluginDecl {
    pub abi_version: u32,
    /// The manifest JSON: `{name, version, description, routes, openapi, migrations,
    /// tenant_tables, jobs}` (`tenant_tables`: names whose `tenant_<name>` its
    /// migrations create; the host generates their isolation).
    pub manifest: extern "C" fn() -> Buf,
    /// One request JSON in (`{method, path, route, params, query, body, context}`),
    /// one response JSON out (`{status, headers, body}`). Must not unwind.
    pub handle: extern "C" fn(host: *const Host, request: *const u8, len: usize) -> Buf,
    /// Frees buffers returned by `manifest` and `handle`.
    pub free: extern "C" fn(Buf),
}

// SAFETY: the declaration holds only function pointers and an integer.
unsafe impl Sync for PluginDecl {}

/// Plugin-side helper: calls the host callback with JSON bytes and returns the
/// answer's bytes (already handed back to the host's allocator).
///
/// # Safety
/// `host` must be the pointer the host passed to the current `handle` call.
pub unsafe fn host_call(host: *const Host, request: &[u8]) -> Vec<u8> {
    // SAFETY: the host guarantees the pointer is valid during the call.
    let host = unsafe { &*host };
    let answer = (host.call)(host.ctx, request.as_ptr(), request.len());
    // SAFETY: the host's buffer is valid until we hand it back with host.free.
    let bytes = unsafe { answer.as_slice() }.to_vec();
    (host.free)(answer);
    bytes
}

/// Plugin-side helper: runs `handler` on the request bytes, turning a panic into a
/// 500 response so nothing unwinds into the host.
///
/// # Safety
/// `request` must point to `len` readable bytes.
pub unsafe fn guarded_handle(
    host: *const Host,
    request: *const u8,
    len: usize,
    handler: fn(*const Host, &[u8]) -> Vec<u8>,
) -> Buf {
    let bytes = if request.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the host guarantees `len` readable bytes for this call.
        unsafe { std::slice::from_raw_parts(request, len) }
    };
    let out = std::panic::catch_unwind(|| handler(host, bytes)).unwrap_or_else(|_| {
        br#"{"status":500,"headers":{"content-type":"application/problem+json"},"body":"{\"type\":\"/problems/internal-error\",\"title\":\"Internal server error\",\"status\":500,\"detail\":\"the plugin failed; it has been logged\"}"}"#
            .to_vec()
    });
    Buf::from_vec(out)
}

/// Declares a plugin: `plinth_abi::declare_plugin!(manifest_json_fn, handler_fn);`
/// where `manifest_json_fn: fn() -> Vec<u8>` and
/// `handler_fn: fn(*const Host, &[u8]) -> Vec<u8>`.
#[macro_export]
macro_rules! declare_plugin {
    ($manifest:path, $handler:path) => {
        extern "C" fn __plinth_manifest() -> $crate::Buf {
            $crate::Buf::from_vec(std::panic::catch_unwind($manifest).unwrap_or_default())
        }

        extern "C" fn __plinth_handle(
            host: *const $crate::Host,
            request: *const u8,
            len: usize,
        ) -> $crate::Buf {
            // SAFETY: the host passes a valid buffer for the call.
            unsafe { $crate::guarded_handle(host, request, len, $handler) }
        }

        #[unsafe(no_mangle)]
        pub static plinth_plugin_declaration: $crate::PluginDecl = $crate::PluginDecl {
            abi_version: $crate::ABI_VERSION,
            manifest: __plinth_manifest,
            handle: __plinth_handle,
            free: $crate::free_buf,
        };
    };
}
