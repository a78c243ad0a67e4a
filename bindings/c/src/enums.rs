//! The C enums. Functions take them as `int32_t` and convert here, so that a value outside
//! the enum is an error code, not undefined behaviour.

use tree_attn::PlanKind;

use crate::error::FfiError;

/// Element type of q, kv and out (lse and merge partial states are always f32).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreepoDtype {
    /// 32-bit float (every device).
    F32 = 0,
    /// IEEE half (CUDA).
    F16 = 1,
    /// bfloat16 (CUDA).
    Bf16 = 2,
}

impl TreepoDtype {
    pub(crate) fn from_raw(v: i32) -> Result<TreepoDtype, FfiError> {
        match v {
            0 => Ok(TreepoDtype::F32),
            1 => Ok(TreepoDtype::F16),
            2 => Ok(TreepoDtype::Bf16),
            _ => Err(FfiError::Invalid(format!(
                "dtype = {v} is not a TreepoDtype (TREEPO_DTYPE_F32 = 0, TREEPO_DTYPE_F16 = 1, TREEPO_DTYPE_BF16 = 2)"
            ))),
        }
    }
}

/// Standard paged-KV layouts for `treepo_kv_layout` (any other layout: fill the strides of a
/// `TreepoKvLayout` yourself).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreepoKvLayoutKind {
    /// Per layer `[num_pages, 2, page_size, num_kv_heads, head_dim]` (FlashInfer's NHD).
    Nhd = 0,
    /// Per layer `[num_pages, 2, num_kv_heads, page_size, head_dim]` (FlashInfer's HND).
    Hnd = 1,
}

/// How the decoder cuts the forest into work (`plan_arg` is the parameter of the last two).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreepoPlanKind {
    /// Each sequence reads its whole path: no sharing (the baseline).
    Naive = 0,
    /// Two levels: the prefix shared by all sequences, then each one's rest.
    Cascade = 1,
    /// Each shared chunk once for all sequences below it (multi-level cascade).
    Tree = 2,
    /// `Tree` with chunks cut into pieces of at most `plan_arg` tokens (>= 1).
    TreeSplit = 3,
    /// `TreeSplit` sized so that about `plan_arg` (>= 1) pieces cover the distinct KV: the
    /// parallel workers per KV head (SMs / num_kv_heads on a GPU). The recommended default.
    TreeFill = 4,
}

/// The planner's kind for `(kind, arg)`.
pub(crate) fn parse_plan_kind(kind: i32, arg: u32) -> Result<PlanKind, FfiError> {
    let need_arg = |name: &str| {
        if arg == 0 {
            Err(FfiError::Invalid(format!("plan kind {name} needs plan_arg >= 1, got 0")))
        } else {
            Ok(arg)
        }
    };
    match kind {
        0 => Ok(PlanKind::Naive),
        1 => Ok(PlanKind::Cascade),
        2 => Ok(PlanKind::Tree),
        3 => Ok(PlanKind::TreeSplit { max_chunk: need_arg("TREE_SPLIT")? }),
        4 => Ok(PlanKind::TreeFill { units: need_arg("TREE_FILL")? }),
        _ => Err(FfiError::Invalid(format!(
            "plan_kind = {kind} is not a TreepoPlanKind (TREEPO_PLAN_KIND_NAIVE = 0 .. TREEPO_PLAN_KIND_TREE_FILL = 4)"
        ))),
    }
}
