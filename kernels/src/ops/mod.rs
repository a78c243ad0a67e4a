//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.

mod gemm;
mod page_copy;
mod paged_kv_append;
mod paged_kv_layout;
mod residual_add;
mod rmsnorm;

pub use gemm::{GemmSpec, Transpose, gemm};
pub use page_copy::{PageCopyJobs, page_copy};
pub use paged_kv_append::{paged_kv_append, paged_kv_append_strided};
pub use paged_kv_layout::PagedKvLayout;
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
