"""`tree_attention` as the drop-in for a FlexAttention tree mask: the forward against PyTorch's
own `flex_attention` (eager) with the tree's `mask_mod` — the code a TRL/verl/prime-rl training
step writes today — on random forests with GQA. (FlexAttention has no CPU backward; gradients are
checked against SDPA with the same mask in test_tree_attention.py.)"""

import numpy as np
import pytest
import torch
from conftest import assert_close, random_forest

import treepo

flex = pytest.importorskip("torch.nn.attention.flex_attention")


def tree_mask_mod(kv_row_end):
    """Query row q sees key column kv iff kv is q's ancestor-or-self: kv <= q < kv_row_end[kv]
    (packed DFS pre-order keeps every subtree contiguous)."""
    end = torch.as_tensor(kv_row_end, dtype=torch.int64)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx < end[kv_idx])

    return mask_mod


@pytest.mark.filterwarnings("ignore::UserWarning")  # eager flex_attention warns it is slow
@pytest.mark.parametrize("seed,hq,hkv,d", [(11, 4, 4, 32), (12, 8, 2, 64), (13, 6, 3, 16)])
def test_matches_flex_attention_with_the_tree_mask(seed, hq, hkv, d):
    rng = np.random.default_rng(seed)
    parents, counts = random_forest(rng)
    tree = treepo.PackedTree.pack(parents, counts)
    n = tree.num_tokens
    torch.manual_seed(seed)
    q = torch.randn(n, hq, d, dtype=torch.float64)
    k = torch.randn(n, hkv, d, dtype=torch.float64)
    v = torch.randn(n, hkv, d, dtype=torch.float64)

    block_mask = flex.create_block_mask(
        tree_mask_mod(tree.kv_row_end), None, None, n, n, device="cpu", BLOCK_SIZE=16
    )
    ref = flex.flex_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
        block_mask=block_mask, enable_gqa=hq != hkv,
    )[0].transpose(0, 1)
    o = treepo.tree_attention(q.float(), k.float(), v.float(), tree)
    what = f"seed {seed}, N {n}, H_q {hq}, H_kv {hkv}, D {d}"
    assert_close(o, ref, 2e-5, 1e-4, f"forward vs flex_attention ({what})")
