//! The sandbox's bounds, in one place. Defaults are what a hosting provider would pick for small
//! request handlers; each has a `PICLOUD_*` override in the binary's configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Rhai operations per execution (~12 M/s on a small core, so 10 M is ~1 s of CPU).
    pub max_operations: u64,
    /// Nested function calls. Deeper recursion risks the native stack.
    pub max_call_levels: usize,
    /// Expression nesting at the top level and inside functions.
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    /// Bytes of one string built by one call (`pad`, `replace`, `regex::replace_all`, the text
    /// `json::parse` takes…). What a script holds in all is `max_memory_bytes`.
    pub max_string_size: usize,
    /// Items of one array (bytes of one BLOB) built by one call (`pad`, `split`, `to_chars`,
    /// `blob`, `regex::split`…).
    pub max_array_size: usize,
    /// `import` statements executed per run.
    pub max_modules: usize,
    /// Modules importing modules: how deep one chain of imports may go (`a` imports `b` imports
    /// `c` is 3). A server setting; no script can raise it.
    pub module_import_depth_max: usize,
    /// Wall-clock time for one execution, enforced inside Rhai.
    pub timeout_ms: u64,
    /// Bytes of log lines one execution keeps (and writes to the server log); past it, lines are
    /// dropped and counted in one closing line.
    pub max_log_bytes: usize,
    /// Data writes (`kv.set`, `kv.delete`, `docs.create` / `update` / `delete`) one execution may
    /// make; each may fire triggers, so
    /// this also bounds how many trigger jobs one execution can cause.
    pub max_writes: usize,
    /// Bytes of memory one execution may hold at once, counted where they are allocated: every
    /// value, key, capture, parsed body and formatted string. It also bounds a response's body.
    /// Executor threads × this is what scripts can hold in all.
    pub max_memory_bytes: usize,
    /// Bytes of one document's data as JSON text (at most [`crate::docs::DOC_MAX_BYTES`]).
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 10_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_function_expr_depth: 64,
            max_string_size: 4 * 1024 * 1024,
            max_array_size: 100_000,
            max_modules: 32,
            module_import_depth_max: 8,
            timeout_ms: 5_000,
            max_log_bytes: 256 * 1024,
            max_writes: 1_000,
            max_memory_bytes: 32 * 1024 * 1024,
            max_document_bytes: 1024 * 1024,
        }
    }
}
