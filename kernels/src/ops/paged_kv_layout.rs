//! Where each K/V element of a paged cache lives: the descriptor every cache and attention
//! kernel takes (FlashInfer's `paged_kv_t` idea: explicit strides, so one kernel serves HND and
//! NHD layouts and views into engine-owned tensors).

use crate::{KernelError, Result};

const OP: &str = "paged_kv_layout";

/// Element strides of a paged KV cache holding `num_layers` layers of `num_pages` pages, each
/// page holding K and V for `page_size` tokens × `num_kv_heads` heads × `head_dim` values.
///
/// Element `(layer, page, kv, head, token, d)` (kv = 0 for K, 1 for V) lives at
/// `layer*stride_layer + page*stride_page + kv*stride_kv + head*stride_head +
/// token*stride_token + d` (the last dimension is contiguous). One page id addresses the same
/// page in every layer: one page table serves all layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagedKvLayout {
    /// Layers stored in the buffer.
    pub num_layers: usize,
    /// Pages per layer.
    pub num_pages: usize,
    /// KV heads.
    pub num_kv_heads: usize,
    /// Tokens per page (a power of two).
    pub page_size: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Elements between layers.
    pub stride_layer: usize,
    /// Elements between pages.
    pub stride_page: usize,
    /// Elements from K to V of the same page.
    pub stride_kv: usize,
    /// Elements between heads.
    pub stride_head: usize,
    /// Elements between tokens.
    pub stride_token: usize,
}

impl PagedKvLayout {
    /// HND: per layer `[num_pages, 2, num_kv_heads, page_size, head_dim]`, layers contiguous —
    /// each (page, head) tile of `page_size × head_dim` is contiguous (the default).
    pub fn hnd(
        num_layers: usize,
        num_pages: usize,
        num_kv_heads: usize,
        page_size: usize,
        head_dim: usize,
    ) -> Self {
        let stride_token = head_dim;
        let stride_head = page_size * head_dim;
        let stride_kv = num_kv_heads * stride_head;
        let dims = [num_layers, num_pages, num_kv_heads, page_size, head_dim];
        Self::pages_contiguous(dims, [stride_kv, stride_head, stride_token])
    }

    /// NHD: per layer `[num_pages, 2, page_size, num_kv_heads, head_dim]`, layers contiguous.
    pub fn nhd(
        num_layers: usize,
        num_pages: usize,
        num_kv_heads: usize,
        page_size: usize,
        head_dim: usize,
    ) -> Self {
        let stride_head = head_dim;
        let stride_token = num_kv_heads * head_dim;
        let stride_kv = page_size * stride_token;
        let dims = [num_layers, num_pages, num_kv_heads, page_size, head_dim];
        Self::pages_contiguous(dims, [stride_kv, stride_head, stride_token])
    }

    /// The layouts whose pages follow each other (K then V in each, `stride_kv` apart) and whose
    /// layers do too: `dims` = `[num_layers, num_pages, num_kv_heads, page_size, head_dim]`,
    /// `half` = `[stride_kv, stride_head, stride_token]`.
    fn pages_contiguous(dims: [usize; 5], half: [usize; 3]) -> Self {
        let [num_layers, num_pages, num_kv_heads, page_size, head_dim] = dims;
        let [stride_kv, stride_head, stride_token] = half;
        let stride_page = 2 * stride_kv;
        PagedKvLayout {
            num_layers,
            num_pages,
            num_kv_heads,
            page_size,
            head_dim,
            stride_layer: num_pages * stride_page,
            stride_page,
            stride_kv,
            stride_head,
            stride_token,
        }
    }

    /// Offset of element `(layer, page, kv, head, token, d)`.
    pub fn offset(
        &self,
        layer: usize,
        page: usize,
        kv: usize,
        head: usize,
        token: usize,
        d: usize,
    ) -> usize {
        layer * self.stride_layer
            + page * self.stride_page
            + kv * self.stride_kv
            + head * self.stride_head
            + token * self.stride_token
            + d
    }

    /// Elements a buffer needs to hold every reachable element (0 for an empty cache).
    pub fn required_len(&self) -> Result<usize> {
        let dims =
            [self.num_layers, self.num_pages, 2, self.num_kv_heads, self.page_size, self.head_dim];
        if dims.contains(&0) {
            return Ok(0);
        }
        let terms = [
            (self.num_layers - 1, self.stride_layer),
            (self.num_pages - 1, self.stride_page),
            (1, self.stride_kv),
            (self.num_kv_heads - 1, self.stride_head),
            (self.page_size - 1, self.stride_token),
            (self.head_dim - 1, 1),
        ];
        terms
            .iter()
            .try_fold(1usize, |acc, &(n, s)| n.checked_mul(s).and_then(|t| acc.checked_add(t)))
            .ok_or_else(|| KernelError::Invalid {
                op: OP,
                msg: format!("layout {self:?} overflows usize"),
            })
    }

    /// Checks the layout itself and that a buffer of `buffer_len` elements holds it.
    pub fn validate(&self, buffer_len: usize) -> Result<()> {
        crate::ensure!(
            self.page_size.is_power_of_two(),
            OP,
            "page_size = {} must be a power of two",
            self.page_size
        );
        crate::ensure!(self.head_dim > 0, OP, "head_dim must be > 0");
        crate::ensure!(self.num_kv_heads > 0, OP, "num_kv_heads must be > 0");
        let need = self.required_len()?;
        crate::ensure!(
            need <= buffer_len,
            OP,
            "the layout reaches element {} but the buffer holds {buffer_len}",
            need.saturating_sub(1)
        );
        Ok(())
    }

    /// Tokens addressable through a slot id `page * page_size + offset`.
    pub fn num_slots(&self) -> usize {
        self.num_pages * self.page_size
    }

    /// Checks that distinct `(layer, page, kv, head, token, d)` coordinates address distinct
    /// elements — what the ops that write the cache (`paged_kv_append`, `page_copy`) need so
    /// that their parallel writes never collide. The test is the usual sufficient one for
    /// strided tensors: with dimensions of size 1 ignored and the rest sorted by stride, each
    /// stride is at least the extent spanned by all the smaller ones. HND, NHD, K and V in
    /// separate halves of a buffer, and padded strides all pass.
    pub fn check_disjoint(&self) -> Result<()> {
        let mut dims = [
            ("stride_layer", self.num_layers, self.stride_layer),
            ("stride_page", self.num_pages, self.stride_page),
            ("stride_kv", 2, self.stride_kv),
            ("stride_head", self.num_kv_heads, self.stride_head),
            ("stride_token", self.page_size, self.stride_token),
            ("the contiguous head_dim", self.head_dim, 1),
        ];
        dims.sort_by_key(|&(_, _, stride)| stride);
        let mut extent = 1usize; // elements spanned by the dimensions checked so far
        for (name, n, stride) in dims.into_iter().filter(|&(_, n, _)| n > 1) {
            crate::ensure!(
                stride >= extent,
                OP,
                "{name} = {stride} is smaller than the {extent} elements spanned by the \
                 dimensions with smaller strides: two coordinates would share an element"
            );
            extent = (n - 1).checked_mul(stride).and_then(|t| t.checked_add(extent)).ok_or_else(
                || KernelError::Invalid { op: OP, msg: format!("layout {self:?} overflows usize") },
            )?;
        }
        Ok(())
    }
}
