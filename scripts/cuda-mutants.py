#!/usr/bin/env python3
"""Mutation check of the CUDA kernels on the emulated device: proof that the conformance tests
can fail.

Each mutant below is a small, realistic bug (a swapped MMA fragment register, a dropped quad
shuffle, a causal off-by-one, a removed barrier, a wrong GQA head mapping, ...) given as an exact
snippet of a file of kernels/cuda/ (it must occur there exactly once: asserted) and its
replacement, with the CUDA tests that should notice it. For every mutant, one at a time:

  1. the mutated text is written over the file, in a private copy of kernels/cuda/
     (target/cuda-mutants/cuda/, refreshed from the real files before every mutant) that
     `scripts/cuda-emu.sh` builds when given TREEPO_EMU_CUDA_DIR, into its own output directory
     (TREEPO_EMU_OUT=target/cuda-mutants/emu/<variant>): a mutated kernel never reaches the real
     sources or a concurrent build of them. With --in-place (or a cuda-emu.sh without those
     variables) the real file is mutated instead, its original bytes kept in memory and in a
     journal (target/cuda-mutants/applied.json) that the next run undoes if this one is killed;
  2. the emulated device is rebuilt (only the changed translation units recompile) and the tests
     run through `scripts/cuda-emu.sh <suite binary> --exact <tests...>` under a timeout (a test
     process that has printed its result but not exited 60 s later is killed and judged by the
     printed result);
  3. the mutant is caught when the suite fails (the failing tests are named, with the first
     `treepo-cuda-emu:` line when a launch failed, else the first assertion message), or missed;
  4. the file is ALWAYS restored (try/finally; SIGINT, SIGTERM and SIGHUP unwind through it) by
     writing back the exact bytes read before the mutation, never via git (other people may have
     uncommitted edits), and checked byte for byte. Should someone save the file while it is
     mutated, only the mutated snippet is reverted and the script says so.

A mutant the default (fiber) schedule misses is run again on the ThreadSanitizer build
(`scripts/cuda-emu.sh --sanitize thread`: one OS thread per CUDA thread; `--test-threads 1`). It
is "caught by TSan" when TSan reports a race with a frame in kernels/cuda/ that the unmutated
kernels do not have (a TSan baseline of the same tests runs first; TSan stops at the first
report), or when the tests fail there.

Before any mutant, a baseline run (no mutant) of every test used must pass, else the script
aborts; it is repeated after the last mutant, so that a concurrent edit breaking the tests
during the run cannot pass for a caught mutant unnoticed.

The test binaries embed the .cu text at cargo build time, but only to list kernel names (NVRTC);
what executes is the host build of the files given to cuda-emu.sh, so no cargo rebuild is needed
per mutant: the suite binaries are built once at the start (`cargo test -p <crate> --test suite
--no-run`).

Usage:
  python3 scripts/cuda-mutants.py              # every mutant; writes docs/cuda-emu-mutants.md
  python3 scripts/cuda-mutants.py --list       # the mutants, their files and tests
  python3 scripts/cuda-mutants.py --only dec-mma-causal [--only ID ...]   # some (no doc written)
Options: --timeout S (per test run, 300), --tsan-timeout S (900), --no-tsan, --in-place,
--doc PATH. Python 3.8+, standard library only. The emulated device: docs/cuda-emu.md.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
CUDA_DIR = ROOT / "kernels" / "cuda"
EMU = ROOT / "scripts" / "cuda-emu.sh"
STATE = ROOT / "target" / "cuda-mutants"
WORK = STATE / "cuda"  # the private copy of kernels/cuda (isolated mode)
EMU_OUT = STATE / "emu"  # its emulator builds, one directory per variant
JOURNAL = STATE / "applied.json"  # in-place mode: the file being mutated and its original
LOGS = STATE / "logs"
DOC = ROOT / "docs" / "cuda-emu-mutants.md"

# Test suites: key -> cargo package (each has one integration binary `suite`).
PACKAGES = {"kernels": "treepo-kernels", "tree-attn": "tree-attn"}


class Mutant(NamedTuple):
    id: str
    file: str  # relative to kernels/cuda/
    original: str  # exact snippet; must occur exactly once in the file
    replacement: str
    bug: str  # one line
    tests: Tuple[str, ...]  # full test names (run with --exact)
    suite: str = "kernels"  # key of PACKAGES
    note: str = ""  # why it may escape, and what would catch it (printed for a missed mutant)


# ------------------------------------------------------------------------------ test groups
DECODE = ("tree_decode::matches_reference::cuda", "paged_decode::matches_reference::cuda")
PA_FWD_QUICK = (
    "packed_attention_fwd::chain_tree_equals_causal::cuda",
    "packed_attention_fwd::single_token_trees::cuda",
    "packed_attention_fwd::skips_fully_masked_tiles::cuda",
    "packed_attention_fwd::tree_equals_per_leaf::cuda",
)
PA_FWD_DENSE = "packed_attention_fwd::matches_dense_reference::cuda"
PA_BWD = (
    "packed_attention_bwd::packed_grads_equal_per_leaf_grads::cuda",
    "packed_attention_bwd::single_token_and_masked_tiles::cuda",
)
PA_BWD_DENSE = "packed_attention_bwd::grads_match_dense_reference::cuda"

# ------------------------------------------------------------------------------ the mutants
MUTANTS = [
    # --- decode_tile.cuh: the decode attention tile of paged_decode and tree_decode ----------
    Mutant(
        "dec-qa-swap",
        "decode_tile.cuh",
        "qa[ks][1] = dec_ld32(r1);\n            qa[ks][2] = dec_ld32(r0 + 8);",
        "qa[ks][1] = dec_ld32(r0 + 8);\n            qa[ks][2] = dec_ld32(r1);",
        "MMA path: Q A-fragment registers 1 and 2 swapped (row+8 and column+8 halves exchanged)",
        DECODE,
    ),
    Mutant(
        "dec-pa-swap",
        "decode_tile.cuh",
        "pa[1] = Ops::pack(s[2 * kk][2], s[2 * kk][3]);\n"
        "                pa[2] = Ops::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);",
        "pa[1] = Ops::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);\n"
        "                pa[2] = Ops::pack(s[2 * kk][2], s[2 * kk][3]);",
        "MMA path: P re-packed as an A fragment with registers 1 and 2 swapped",
        DECODE,
    ),
    Mutant(
        "dec-vb-swap",
        "decode_tile.cuh",
        "Ops::mma(o[dt], pa, dec_ld32(vr), dec_ld32(vr + 8));",
        "Ops::mma(o[dt], pa, dec_ld32(vr + 8), dec_ld32(vr));",
        "MMA path: the two V B-fragment registers (k and k+8) swapped in O += P·V",
        DECODE,
    ),
    Mutant(
        "dec-rowmax-shfl",
        "decode_tile.cuh",
        "mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));\n"
        "                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));",
        "mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));",
        "MMA path: row max misses the xor-2 quad shuffle (each lane pair keeps its own max)",
        DECODE,
    ),
    Mutant(
        "dec-rowsum-shfl",
        "decode_tile.cuh",
        "l += __shfl_xor_sync(0xffffffffu, l, 1);\n"
        "                l += __shfl_xor_sync(0xffffffffu, l, 2);",
        "l += __shfl_xor_sync(0xffffffffu, l, 1);",
        "MMA path: final row sum misses the xor-2 quad shuffle (half the row's mass)",
        DECODE,
    ),
    Mutant(
        "dec-mma-causal",
        "decode_tile.cuh",
        "s[nt][e] = pos <= lim[e >> 1] ?",
        "s[nt][e] = pos < lim[e >> 1] ?",
        "MMA path: causal mask off by one (`pos < lim`: a query no longer sees its own key)",
        DECODE,
    ),
    Mutant(
        "dec-simt-causal",
        "decode_tile.cuh",
        "Sf[idx] = (t0 + t <= lim[i]) ?",
        "Sf[idx] = (t0 + t < lim[i]) ?",
        "SIMT path: causal mask off by one (`t0 + t < lim`)",
        DECODE,
    ),
    Mutant(
        "dec-mma-bar-kv-free",
        "decode_tile.cuh",
        "            __syncthreads();  // every warp is done with the previous Ks/Vt\n"
        "            for (int c = tid; c < MMA_KB * VPR; c += DEC_THREADS) {",
        "            for (int c = tid; c < MMA_KB * VPR; c += DEC_THREADS) {",
        "MMA path: barrier before staging a K/V block removed (overwrites Ks/Vt still being read)",
        DECODE,
    ),
    Mutant(
        "dec-mma-bar-kv-ready",
        "decode_tile.cuh",
        "for (int k = 0; k < E; ++k) Vt[(part * E + k) * VLD + t] = ve[k];\n"
        "            }\n"
        "            __syncthreads();\n",
        "for (int k = 0; k < E; ++k) Vt[(part * E + k) * VLD + t] = ve[k];\n"
        "            }\n",
        "MMA path: barrier after staging a K/V block removed (fragments read before written)",
        DECODE,
    ),
    Mutant(
        "dec-simt-bar-softmax",
        "decode_tile.cuh",
        "                    mrun[i] = mnew;\n"
        "                }\n"
        "            }\n"
        "            __syncthreads();\n",
        "                    mrun[i] = mnew;\n"
        "                }\n"
        "            }\n",
        "SIMT path: barrier between the softmax (P, alpha) and P·V removed",
        DECODE,
    ),
    Mutant(
        "dec-bar-smax-reset",
        "decode_tile.cuh",
        "    if (threadIdx.x == 0) *s_max = -1;\n    __syncthreads();\n",
        "    if (threadIdx.x == 0) *s_max = -1;\n",
        "causal cut-off: barrier between thread 0's reset of the shared max and the other "
        "threads' atomicMax removed (a late reset erases their maxima)",
        DECODE,
        note="a late reset erases only the maxima of the threads that ran before it; thread i "
        "owns query row i, so while every row of a job is in warp 0 (at most 32 rows, as in the "
        "decode tests) and thread 0 runs before the other lanes of its warp (the fiber "
        "schedule), the result stays right. ThreadSanitizer reports the unordered "
        "write/atomicMax pair; a decode test job of more than 32 query rows would catch it "
        "under fibers.",
    ),
    # --- packed attention (training): packed_attention.cuh, _fwd.cu, _bwd.cu ------------------
    Mutant(
        "pa-classify-empty",
        "packed_attention.cuh",
        "if (r0 >= hi || r1 <= c0) return 0;",
        "if (r0 + 1 >= hi || r1 <= c0) return 0;",
        "tile classification off by one: kv_row_end taken as inclusive, a tile whose first row "
        "is the last one seeing the block is skipped as empty",
        PA_FWD_QUICK + ("packed_attention_bwd::single_token_and_masked_tiles::cuda",),
        suite="tree-attn",
    ),
    Mutant(
        "pa-fwd-bar-kv-ready",
        "packed_attention_fwd.cu",
        "        __syncthreads();\n\n        // S = Q K^T for this warp's 16 rows x 64 keys.",
        "\n        // S = Q K^T for this warp's 16 rows x 64 keys.",
        "forward, tensor-core tile: barrier after staging K/Vᵀ in shared memory removed",
        PA_FWD_QUICK,
        suite="tree-attn",
    ),
    Mutant(
        "pa-fwd-gqa",
        "packed_attention_fwd.cu",
        "const int h = blockIdx.y, g = h / (hq / hkv);\n    const int r0 = tile * BR",
        "const int h = blockIdx.y, g = h % hkv;\n    const int r0 = tile * BR",
        "forward, tensor-core tile: GQA head mapping interleaved (h % hkv) instead of grouped",
        PA_FWD_QUICK + (PA_FWD_DENSE,),
        suite="tree-attn",
    ),
    Mutant(
        "pa-fwd-rowsum-shfl",
        "packed_attention_fwd.cu",
        "    l_a += __shfl_xor_sync(PA_FULL, l_a, 1);\n"
        "    l_a += __shfl_xor_sync(PA_FULL, l_a, 2);\n",
        "    l_a += __shfl_xor_sync(PA_FULL, l_a, 1);\n",
        "forward, tensor-core tile: row sum of rows gid misses the xor-2 quad shuffle",
        PA_FWD_QUICK,
        suite="tree-attn",
    ),
    Mutant(
        "pa-bwd-bar-rows-free",
        "packed_attention_bwd.cu",
        "            __syncthreads();         // the previous rows are consumed (and ks/vs/es written)\n"
        "            for (int e = threadIdx.x; e < BR * D; e += blockDim.x) {",
        "            for (int e = threadIdx.x; e < BR * D; e += blockDim.x) {",
        "backward dK/dV: barrier before restaging the next 16 query rows removed",
        PA_BWD,
        suite="tree-attn",
    ),
    Mutant(
        "pa-bwd-gqa",
        "packed_attention_bwd.cu",
        "const int h = g * group + hh;",
        "const int h = hh * hkv + g;",
        "backward dK/dV: the group's query heads taken interleaved (hh·hkv + g) instead of grouped",
        PA_BWD + (PA_BWD_DENSE,),
        suite="tree-attn",
    ),
    # --- merge_states.cu --------------------------------------------------------------------
    Mutant(
        "merge-lse-base2",
        "merge_states.cu",
        "if (l != NEG_INF) wsum += expf(l - mx);",
        "if (l != NEG_INF) wsum += exp2f(l - mx);",
        "state weights of the normalizer taken in base 2 (FlashInfer's convention) on natural LSEs",
        ("merge_states::matches_reference::cuda", "tree_decode::matches_reference::cuda"),
    ),
    Mutant(
        "merge-empty-state",
        "merge_states.cu",
        "            if (l == NEG_INF) continue;\n"
        "            acc = fmaf(",
        "            acc = fmaf(",
        "empty states (lse = -inf) no longer skipped: 0 · (garbage o) is read",
        ("merge_states::matches_reference::cuda", "tree_decode::matches_reference::cuda"),
    ),
    # --- paged KV cache -----------------------------------------------------------------------
    Mutant(
        "kv-append-row-stride",
        "paged_kv_append.cu",
        "W* dst = cache + page * s_page + row * s_token;",
        "W* dst = cache + page * s_page + row * s_head;",
        "slot row offset uses the head stride instead of the token stride (HND/NHD mix-up)",
        ("paged_kv_append::appends::cuda",),
    ),
    Mutant(
        "page-copy-layer-offset",
        "page_copy.cu",
        "const i64 base = (i64)layer * s_layer;",
        "const i64 base = (i64)layer * s_page;",
        "layer offset taken with the page stride: layer l of page dst is written into page "
        "dst + l of layer 0",
        ("page_copy::forks::cuda", "page_copy::empty_and_update::cuda"),
    ),
    # --- reductions in common.cuh -------------------------------------------------------------
    Mutant(
        "common-warp-sum-step",
        "common.cuh",
        "for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "for (int o = 16; o > 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "warp_sum stops before the last butterfly step (xor 1): odd and even lanes never meet",
        (
            "rmsnorm::normalizes::cuda",
            "gather_logprob::gathers::cuda",
            "paged_decode::matches_reference::cuda",
        ),
    ),
    Mutant(
        "common-block-sum-bar",
        "common.cuh",
        "    v = warp_sum(v);\n    __syncthreads();  // scratch may still be read by a previous reduction\n",
        "    v = warp_sum(v);\n",
        "block_sum: leading barrier removed (a second reduction overwrites scratch still being read)",
        ("target_logprob::csr_rows::cuda",),
        note="a real race: warp 0 can finish its shuffles and overwrite scratch[0] before warp "
        "1 has read the previous reduction's value. Only a schedule that lets a warp run ahead "
        "of another exposes it: the fiber schedule does (each warp runs as far as its own "
        "collectives allow before the next starts, warps in order in even blocks and in "
        "reverse in odd ones: kernels/emu/src/runtime.cpp); ThreadSanitizer does not (every "
        "collective, warp shuffles included, takes the block's one mutex, which orders the read "
        "before the write in the interleavings that occur). compute-sanitizer racecheck on a "
        "GPU (scripts/gpu-check.sh) would report it too.",
    ),
    # --- row kernels --------------------------------------------------------------------------
    Mutant(
        "rmsnorm-eps-outside",
        "rmsnorm.cu",
        "rsqrtf(ss / (float)dim + eps)",
        "rsqrtf(ss / (float)dim) + eps",
        "eps added after the rsqrt instead of to the mean square",
        ("rmsnorm::normalizes::cuda",),
    ),
    Mutant(
        "rmsnorm-eps-in-sum",
        "rmsnorm.cu",
        "rsqrtf(ss / (float)dim + eps)",
        "rsqrtf((ss + eps) / (float)dim)",
        "eps added to the sum of squares before dividing by dim (eps/dim instead of eps)",
        ("rmsnorm::normalizes::cuda",),
        note="moving eps changes r by about eps·(1 − 1/dim) / (2·mean(x²)) relative: visible "
        "only on a row whose mean square is comparable to eps (rmsnorm::normalizes has one); on "
        "rows with mean(x²) ≳ 1 the change, ≈ 5e-7, is below the test's rtol of 2e-5.",
    ),
    Mutant(
        "rope-pairing",
        "rope.cu",
        "        float* xt = x + (i64)t * token_stride + j;\n"
        "        for (u32 h = 0; h < num_heads; ++h) {\n"
        "            float* p = xt + (i64)h * head_stride;\n"
        "            const float a = p[0], b = p[half];\n"
        "            p[0] = a * c - b * s;\n"
        "            p[half] = b * c + a * s;",
        "        float* xt = x + (i64)t * token_stride + 2 * j;\n"
        "        for (u32 h = 0; h < num_heads; ++h) {\n"
        "            float* p = xt + (i64)h * head_stride;\n"
        "            const float a = p[0], b = p[1];\n"
        "            p[0] = a * c - b * s;\n"
        "            p[1] = b * c + a * s;",
        "interleaved (GPT-J) pairing 2j/2j+1 instead of HF's half-split j/j+D/2",
        ("rope::rotates_like_hf::cuda", "rope::rotates_views_of_fused_qkv::cuda"),
    ),
    Mutant(
        "categorical-scan",
        "categorical.cu",
        "if (lane >= o) incl += n;",
        "if (lane > o) incl += n;",
        "warp inclusive scan (shfl_up) off by one: lane o skips the partner at distance o",
        ("categorical::draws_by_inverse_cdf::cuda", "categorical::never_picks_zero_weight::cuda"),
    ),
    Mutant(
        "embedding-bwd-exit",
        "embedding_bwd.cu",
        "if (__syncthreads_or(earlier)) return;",
        "if (earlier) return;",
        "first-occurrence test without the block vote: threads exit on their own, not together",
        ("embedding_bwd::accumulates_repeated_ids::cuda",),
    ),
    Mutant(
        "adamw-bias-correction",
        "adamw.cu",
        "const float mhat = mi * inv_bc1, vhat = vi * inv_bc2;",
        "const float mhat = mi * inv_bc2, vhat = vi * inv_bc1;",
        "bias corrections of m and v exchanged",
        ("adamw::matches_reference_over_steps::cuda",),
    ),
]


# ------------------------------------------------------------------------------ utilities
def rel(text) -> str:
    """Paths in `text` relative to the repository root (the private copy shown as kernels/cuda)."""
    return str(text).replace(str(WORK) + "/", "kernels/cuda/").replace(str(ROOT) + "/", "")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def say(msg: str) -> None:
    print(msg, flush=True)


def fmt_secs(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


_BLOCK = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class RunResult(NamedTuple):
    rc: Optional[int]  # None: timed out
    out: str
    secs: float
    hung: bool = False  # killed after the test harness printed its result (did not exit)


def run(cmd: List[str], timeout: Optional[float], env: Optional[Dict[str, str]] = None,
        log: Optional[Path] = None, exit_grace: Optional[float] = None) -> RunResult:
    """Runs cmd in the repository root in its own process group (killed on timeout or when
    this script is interrupted); stdout and stderr together. With exit_grace, a process that
    has printed libtest's `test result:` line but does not exit within exit_grace seconds is
    killed and its printed results are used (hung = True)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, env=env)
    chunks: List[bytes] = []
    finished = threading.Event()

    def reader() -> None:
        for line in iter(p.stdout.readline, b""):
            chunks.append(line)
            if line.startswith(b"test result:"):
                finished.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def kill() -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()

    rc: Optional[int] = None
    hung = False
    grace_end: Optional[float] = None
    try:
        while True:
            try:
                rc = p.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if exit_grace is not None and finished.is_set():
                grace_end = grace_end or now + exit_grace
                if now > grace_end:
                    kill()
                    rc, hung = p.returncode, True
                    break
            if timeout is not None and now - t0 > timeout:
                kill()
                rc = None
                break
    except BaseException:
        kill()
        raise
    th.join(timeout=10)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if hung:
        text += f"\n[cuda-mutants: the process had not exited {exit_grace:.0f} s after its test " \
                "result; killed]\n"
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(rel(c) for c in cmd)}\n# rc={rc}\n{text}")
    return RunResult(rc, text, time.monotonic() - t0, hung)


# ------------------------------------------------------------------------------ mutation
class Applied(NamedTuple):
    path: Path
    original: bytes
    mutated: bytes
    m: Mutant


def check_snippets(mutants: List[Mutant]) -> List[str]:
    problems = []
    for m in mutants:
        path = CUDA_DIR / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {rel(path)} does not exist")
            continue
        n = path.read_bytes().count(m.original.encode())
        if n != 1:
            problems.append(f"{m.id}: the original snippet occurs {n} times in {rel(path)} "
                            f"(must be exactly once):\n    {m.original!r}")
        if not m.replacement or m.replacement == m.original:
            problems.append(f"{m.id}: the replacement must be non-empty and differ")
    return problems


def sync_copy() -> None:
    """Refreshes the private copy from the real kernels/cuda (read fresh: it may be edited)."""
    tmp = STATE / "cuda.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(CUDA_DIR, tmp)
    shutil.rmtree(WORK, ignore_errors=True)
    os.replace(tmp, WORK)


def write_journal(a: Applied) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = JOURNAL.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "mutant": a.m.id,
        "file": rel(a.path),
        "original_b64": base64.b64encode(a.original).decode(),
        "original_sha256": sha(a.original),
        "mutated_sha256": sha(a.mutated),
    }))
    os.replace(tmp, JOURNAL)


def recover_journal() -> None:
    """Undoes the in-place mutant of a run that was killed before it could restore its file."""
    if not JOURNAL.exists():
        return
    j = json.loads(JOURNAL.read_text())
    path = ROOT / j["file"]
    original = base64.b64decode(j["original_b64"])
    cur = path.read_bytes()
    if sha(cur) == j["mutated_sha256"]:
        path.write_bytes(original)
        say(f"recovered {j['file']} from an interrupted run (mutant {j['mutant']} undone)")
    elif sha(cur) != j["original_sha256"]:
        sys.exit(f"cuda-mutants: {rel(JOURNAL)} says mutant {j['mutant']} was applied to "
                 f"{j['file']}, but the file has changed since; restore it by hand (the original "
                 f"is base64 in the journal), then delete the journal")
    JOURNAL.unlink()


def apply(m: Mutant, base: Path) -> Applied:
    path = base / m.file
    original = path.read_bytes()  # fresh: the file may have been edited since the last mutant
    snip, repl = m.original.encode(), m.replacement.encode()
    n = original.count(snip)
    assert n == 1, f"{m.id}: the original snippet occurs {n} times in {rel(path)}"
    mutated = original.replace(snip, repl, 1)
    a = Applied(path, original, mutated, m)
    if base == CUDA_DIR:
        write_journal(a)  # first: a kill between the two writes is still recoverable
    path.write_bytes(mutated)
    return a


def restore(a: Applied) -> None:
    """Writes the original bytes back (signals held off meanwhile) and verifies them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCK)
    try:
        cur = a.path.read_bytes()
        if cur == a.mutated:
            a.path.write_bytes(a.original)
            if a.path.read_bytes() != a.original:
                raise RuntimeError(f"{rel(a.path)}: the restored bytes do not read back")
        elif cur != a.original:
            # Someone saved the file while the mutant was applied: revert only the mutation.
            repl, snip = a.m.replacement.encode(), a.m.original.encode()
            if cur.count(repl) == 1:
                a.path.write_bytes(cur.replace(repl, snip, 1))
                say(f"  WARNING: {rel(a.path)} was edited during mutant {a.m.id}; only the "
                    f"mutated snippet was reverted, the other edits are kept")
            else:
                keep = STATE / f"conflict-{a.m.id}-{a.path.name}"
                keep.write_bytes(cur)
                raise RuntimeError(
                    f"{rel(a.path)} was edited during mutant {a.m.id} and the mutation cannot be "
                    f"located; the current text is saved as {rel(keep)}"
                    + (f" and {rel(JOURNAL)} holds the original: merge by hand"
                       if a.path.parent == CUDA_DIR else ""))
        if JOURNAL.exists() and a.path.parent == CUDA_DIR:
            JOURNAL.unlink()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ------------------------------------------------------------------------------ builds and runs
def build_suite(key: str) -> Path:
    """cargo builds `<package>`'s suite binary (a no-op when up to date); returns its path."""
    cmd = ["cargo", "test", "-p", PACKAGES[key], "--test", "suite", "--no-run",
           "--message-format=json-render-diagnostics"]
    say(f"building the {key} suite: {' '.join(cmd[:6])}")
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exe = None
    for line in p.stdout.decode(errors="replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "suite"
                and msg.get("executable")):
            exe = Path(msg["executable"])
    if p.returncode != 0 or exe is None:
        sys.stderr.write(p.stderr.decode(errors="replace")[-4000:])
        sys.exit(f"cuda-mutants: building the {key} suite failed")
    return exe


class Emu:
    """How scripts/cuda-emu.sh is invoked: on the private copy (isolated) or in place."""

    def __init__(self, isolated: bool):
        self.isolated = isolated
        self.base = WORK if isolated else CUDA_DIR

    def env(self, sanitize: Optional[str]) -> Dict[str, str]:
        env = dict(os.environ)
        if self.isolated:
            env["TREEPO_EMU_CUDA_DIR"] = str(WORK)
            env["TREEPO_EMU_OUT"] = str(EMU_OUT / (f"san-{sanitize}" if sanitize else "fibers"))
        if sanitize == "thread":
            # Stop at the first report (TSan's exit status 66); the Rust test binary is not
            # instrumented, so reports from it are ignored (as scripts/cuda-emu.sh's default).
            env["TSAN_OPTIONS"] = ("halt_on_error=1 ignore_noninstrumented_modules=1 "
                                   "report_signal_unsafe=0 second_deadlock_stack=1")
        return env

    def cmd(self, sanitize: Optional[str]) -> List[str]:
        return [str(EMU)] + (["--sanitize", sanitize] if sanitize else [])

    def build(self, sanitize: Optional[str], log: Path) -> RunResult:
        return run(self.cmd(sanitize), timeout=3600, env=self.env(sanitize), log=log)

    def check_isolated(self) -> Optional[str]:
        """After a build: did cuda-emu.sh really build the private copy into its own directory?"""
        out = EMU_OUT / "fibers"
        gens = list((out / "gen").glob("*.cpp"))
        if not (out / "libcuda.so").is_file() or not gens:
            return f"no emulator library in {rel(out)}"
        if not any(str(WORK) + "/" in g.read_text() for g in gens):
            return f"the generated units in {rel(out / 'gen')} do not include {rel(WORK)}"
        return None

    def tests(self, exe: Path, tests: Tuple[str, ...], timeout: float, log: Path,
              sanitize: Optional[str] = None) -> RunResult:
        cmd = self.cmd(sanitize) + [str(exe), "--exact"] + list(tests)
        if sanitize:
            cmd += ["--test-threads", "1"]
        return run(cmd, timeout=timeout, env=self.env(sanitize), log=log, exit_grace=60)


FAILED_RE = re.compile(r"^test (\S+) \.\.\. .*?FAILED\s*$", re.M)
STDOUT_RE = re.compile(r"^---- (\S+) stdout ----$", re.M)
RESULT_RE = re.compile(r"^test result: (\w+)\. (\d+) passed; (\d+) failed", re.M)
PANIC_RE = re.compile(r"panicked at [^\n]*:\n([^\n]+)")
THREAD_RE = re.compile(r"^thread '([^']+::[^']+)' (?:\(\d+\) )?(?:panicked|has overflowed)", re.M)
FATAL_RE = re.compile(r"^(.*(?:has overflowed its stack|fatal runtime error|Segmentation fault"
                      r"|double free|corrupted|AddressSanitizer|ThreadSanitizer: [a-z]).*)$", re.M)
TSAN_REPORT_RE = re.compile(r"^WARNING: ThreadSanitizer: (.*?)(?: \(pid=\d+\))?$(.*?)^SUMMARY: ThreadSanitizer:",
                            re.M | re.S)
TSAN_ACCESS_RE = re.compile(r"^  (\S.*?) of size \d+ at \S+ by [^\n]*:\n((?:    #\d+ [^\n]*\n)+)", re.M)
KERNEL_FRAME_RE = re.compile(r"#\d+ (.+?) (kernels/cuda/[\w.]+:\d+)")


def tsan_reports(text: str) -> List[str]:
    """One line per ThreadSanitizer report that has a frame in kernels/cuda/, e.g. `data race:
    Atomic read at kernels/cuda/x.cuh:456 (f) vs Previous write at kernels/cuda/x.cuh:453 (f)`;
    each access is placed at its innermost kernels/cuda/ frame."""
    out = []
    for kind, body in TSAN_REPORT_RE.findall(text):
        accesses = []
        for what, frames in TSAN_ACCESS_RE.findall(body):
            k = KERNEL_FRAME_RE.search(frames)
            if k:
                accesses.append(f"{what} at {k.group(2)} ({k.group(1)})")
        if not accesses:
            k = KERNEL_FRAME_RE.search(body)
            if k:
                accesses.append(f"at {k.group(2)} ({k.group(1)})")
        if accesses:
            out.append(f"{kind}: " + " vs ".join(accesses))
    return out


class Outcome(NamedTuple):
    failed: bool
    tests: List[str]  # failing tests
    emu: str  # first treepo-cuda-emu line, or ""
    why: str  # first panic message, or how the process ended
    passed: int
    kernel_races: List[str]  # TSan summaries located in kernels/cuda/
    tsan_reports: int


def outcome(r: RunResult) -> Outcome:
    text = rel(r.out)
    names: List[str] = []
    for rx in (FAILED_RE, STDOUT_RE, THREAD_RE):
        for n in rx.findall(text):
            if n not in names:
                names.append(n)
    emu = next((l.strip() for l in text.splitlines() if "treepo-cuda-emu:" in l), "")
    if emu:
        emu = emu[emu.index("treepo-cuda-emu:"):]
    pm = PANIC_RE.search(text)
    res = RESULT_RE.findall(text)
    passed = sum(int(p) for _, p, _ in res)
    races = tsan_reports(text)
    if r.rc is None:
        why = "timed out"
    elif pm:
        why = pm.group(1).strip()
    elif r.rc != 0 and not res:
        fm = FATAL_RE.search(text)
        why = (fm.group(1).strip() + "; " if fm else "") + f"the test process ended with status {r.rc}"
    else:
        why = ""
    # A process killed after printing its result (hung at exit) counts by that result.
    failed = (r.rc is None or (r.rc != 0 and not (r.hung and res)) or bool(names)
              or any(st != "ok" for st, _, _ in res))
    return Outcome(failed, names, emu, why, passed, races, text.count("WARNING: ThreadSanitizer:"))


# ------------------------------------------------------------------------------ report
class Row(NamedTuple):
    m: Mutant
    result: str  # caught / caught by TSan / MISSED / NOT APPLIED / BUILD ERROR
    caught_by: str
    secs: float


def md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def short(s: str, n: int = 150) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def table(rows: List[Row]) -> str:
    out = ["| id | kernel file | bug | caught by | result |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r.m.id}` | `{r.m.file}` | {md_cell(r.m.bug)} | {md_cell(r.caught_by)} | "
                   f"{r.result} |")
    return "\n".join(out)


def describe(o: Outcome) -> str:
    parts = [", ".join(f"`{t}`" for t in o.tests)] if o.tests else []
    if o.emu:
        parts.append(f"`{short(o.emu, 170)}`")
    elif o.why:
        parts.append(f"({short(o.why, 120)})")
    return "; ".join(p for p in parts if p) or "the test process failed"


# ------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", metavar="ID", help="run only this mutant (repeatable)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per test run (300)")
    ap.add_argument("--tsan-timeout", type=float, default=900,
                    help="seconds per ThreadSanitizer test run (900)")
    ap.add_argument("--no-tsan", action="store_true", help="no ThreadSanitizer pass for misses")
    ap.add_argument("--in-place", action="store_true",
                    help="mutate the real kernels/cuda files (restored after each mutant) instead "
                         "of a private copy")
    ap.add_argument("--doc", type=Path, default=None,
                    help=f"where to write the Markdown report (default {rel(DOC)} for a full run; "
                         "a run with --only writes none unless given)")
    args = ap.parse_args()

    ids = [m.id for m in MUTANTS]
    assert len(set(ids)) == len(ids), "duplicate mutant ids"
    if args.list:
        for m in MUTANTS:
            say(f"{m.id:24} {m.file:24} {m.bug}\n{'':24} tests ({m.suite}): {' '.join(m.tests)}")
        return 0
    selected = MUTANTS
    if args.only:
        unknown = [i for i in args.only if i not in ids]
        if unknown:
            sys.exit(f"cuda-mutants: unknown mutant(s) {', '.join(unknown)}; see --list")
        selected = [m for m in MUTANTS if m.id in args.only]
    doc = args.doc if args.doc is not None else (None if args.only else DOC)

    # SIGINT too, explicitly: a shell starts background jobs with SIGINT ignored.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    STATE.mkdir(parents=True, exist_ok=True)
    recover_journal()
    problems = check_snippets(selected)
    if problems:
        sys.exit("cuda-mutants: snippets that do not apply:\n  " + "\n  ".join(problems))
    emu_text = EMU.read_text()
    isolated = not args.in_place and "TREEPO_EMU_CUDA_DIR" in emu_text and "TREEPO_EMU_OUT" in emu_text
    emu = Emu(isolated)

    t_start = time.monotonic()
    started = datetime.datetime.now().astimezone()
    load = subprocess.run(["uptime"], stdout=subprocess.PIPE).stdout.decode().strip()
    say(f"cuda-mutants: {len(selected)} mutant(s), "
        f"{'on a private copy of kernels/cuda' if isolated else 'in place'}; "
        f"{started:%Y-%m-%d %H:%M %Z}; uptime: {load}")

    suites = sorted({m.suite for m in selected})
    exes = {k: build_suite(k) for k in suites}
    for k, e in exes.items():
        say(f"  {k}: {rel(e)}")

    def tests_of(key: str) -> Tuple[str, ...]:
        seen: List[str] = []
        for m in selected:
            if m.suite == key:
                seen += [t for t in m.tests if t not in seen]
        return tuple(seen)

    def baseline(label: str) -> bool:
        if isolated:
            sync_copy()
        r = emu.build(None, LOGS / f"baseline-{label}-build.log")
        if r.rc != 0:
            say(f"  emulator build failed:\n{rel(r.out[-3000:])}")
            return False
        if isolated and (why := emu.check_isolated()):
            say(f"  scripts/cuda-emu.sh did not build the private copy: {why}; rerun with "
                "--in-place")
            return False
        ok = True
        for k in suites:
            tests = tests_of(k)
            r = emu.tests(exes[k], tests, args.timeout * 2, LOGS / f"baseline-{label}-{k}.log")
            o = outcome(r)
            good = not o.failed and o.passed == len(tests)
            say(f"  baseline ({label}) {k}: {o.passed}/{len(tests)} passed in {r.secs:.0f} s"
                + ("" if good else f"  <-- FAILED {describe(o)}"))
            ok &= good
        return ok

    say("baseline (no mutant): every test used must pass")
    if not baseline("before"):
        say(f"cuda-mutants: the baseline fails; fix that first (logs: {rel(LOGS)}/baseline-*)")
        return 2

    tsan_base: Dict[Tuple[str, Tuple[str, ...]], Tuple[bool, List[str]]] = {}
    tsan_used = False
    rows: List[Row] = []
    interrupted = False

    def mutate_and(m: Mutant, action):
        """Applies m (to a fresh private copy, or in place), runs action(), always restores."""
        if isolated:
            sync_copy()
        try:
            a = apply(m, emu.base)
        except AssertionError as e:
            return None, str(e)
        try:
            return action(), ""
        finally:
            restore(a)

    try:
        for i, m in enumerate(selected, 1):
            t0 = time.monotonic()
            say(f"[{i}/{len(selected)}] {m.id} ({m.file}): {m.bug}")

            def fiber_run():
                b = emu.build(None, LOGS / f"{m.id}-build.log")
                if b.rc != 0:
                    return b, None
                return b, emu.tests(exes[m.suite], m.tests, args.timeout, LOGS / f"{m.id}.log")

            res, err = mutate_and(m, fiber_run)
            if res is None:
                rows.append(Row(m, "NOT APPLIED", short(err), time.monotonic() - t0))
                say(f"  NOT APPLIED: {err}")
                continue
            b, r = res
            if r is None:
                rows.append(Row(m, "BUILD ERROR", "—", time.monotonic() - t0))
                say(f"  BUILD ERROR (the mutant does not compile): {rel(LOGS)}/{m.id}-build.log")
                continue
            o = outcome(r)
            if o.failed:
                result = "caught (timeout)" if r.rc is None else "caught"
                rows.append(Row(m, result, describe(o), time.monotonic() - t0))
                say(f"  {result} in {r.secs:.0f} s: {describe(o)}")
                continue
            say(f"  not caught by the fiber schedule ({r.secs:.0f} s)")
            if args.no_tsan:
                rows.append(Row(m, "MISSED", "— (fibers; TSan not run)", time.monotonic() - t0))
                continue

            # ThreadSanitizer: one OS thread per CUDA thread; first the unmutated baseline.
            tsan_used = True
            key = (m.suite, m.tests)
            if key not in tsan_base:
                n = len(tsan_base)
                if isolated:
                    sync_copy()
                bb = emu.build("thread", LOGS / f"tsan-baseline-{n}-build.log")
                if bb.rc != 0:
                    say(f"  TSan build failed: {rel(LOGS)}/tsan-baseline-{n}-build.log")
                    rows.append(Row(m, "MISSED", "— (TSan build failed)", time.monotonic() - t0))
                    continue
                rb = emu.tests(exes[m.suite], m.tests, args.tsan_timeout,
                               LOGS / f"tsan-baseline-{n}.log", sanitize="thread")
                ob = outcome(rb)
                clean = not ob.failed and ob.passed == len(m.tests)
                tsan_base[key] = (clean, ob.kernel_races)
                say(f"  TSan baseline: {ob.passed}/{len(m.tests)} passed in {rb.secs:.0f} s"
                    + ("" if clean else f"  <-- NOT CLEAN: {describe(ob)} "
                                        f"{'; '.join(ob.kernel_races[:1])}"))
            clean, base_races = tsan_base[key]

            def tsan_run():
                b = emu.build("thread", LOGS / f"{m.id}-tsan-build.log")
                if b.rc != 0:
                    return None
                return emu.tests(exes[m.suite], m.tests, args.tsan_timeout,
                                 LOGS / f"{m.id}-tsan.log", sanitize="thread")

            rt, err = mutate_and(m, tsan_run)
            if rt is None:
                rows.append(Row(m, "MISSED", "— (TSan build failed)", time.monotonic() - t0))
                continue
            ot = outcome(rt)
            new_races = [x for x in ot.kernel_races if x not in base_races]
            if clean and (new_races or ot.failed):
                parts = []
                if new_races:
                    parts.append(f"TSan: `{short(new_races[0], 200)}`")
                if ot.tests or rt.rc is None or not new_races:
                    parts.append("threads schedule: " + describe(ot))
                rows.append(Row(m, "caught by TSan", "; ".join(parts), time.monotonic() - t0))
                say(f"  caught by TSan in {rt.secs:.0f} s: {'; '.join(parts)}")
            else:
                what = "— (fibers and TSan)" if clean else "— (TSan baseline not clean)"
                rows.append(Row(m, "MISSED", what, time.monotonic() - t0))
                say(f"  MISSED (TSan run {rt.secs:.0f} s, no new report in kernels/cuda/)")
    except KeyboardInterrupt:
        interrupted = True
        say("\ninterrupted: the mutated file was restored")

    # In place, a concurrent editor that read a file while it was mutated could save the mutant
    # back later: every original snippet must still be there.
    lost = [m.id for m in selected
            if (CUDA_DIR / m.file).read_bytes().count(m.original.encode()) != 1]
    if lost:
        say(f"WARNING: the original snippet of {', '.join(lost)} is no longer in its file: check "
            "that no mutant was saved back (git diff -- kernels/cuda)")
    after_ok = True
    if not interrupted:
        say("baseline (after the mutants; files restored)")
        after_ok = baseline("after")
    elif isolated:
        sync_copy()  # leave the private copy clean
    else:
        emu.build(None, LOGS / "final-build.log")  # leave clean libraries in target/cuda-emu
    if tsan_used and not isolated:
        emu.build("thread", LOGS / "tsan-final-build.log")
    total = time.monotonic() - t_start

    caught = sum(r.result.startswith("caught") for r in rows)
    by_tsan = sum(r.result == "caught by TSan" for r in rows)
    missed = [r for r in rows if r.result not in ("caught", "caught (timeout)", "caught by TSan")]
    md = table(rows)
    say("\n" + md + "\n")
    summary = (f"{caught} of {len(rows)} mutants caught ({caught - by_tsan} by the default fiber "
               f"schedule, {by_tsan} only by ThreadSanitizer), {len(missed)} not")
    say(f"{summary}; {fmt_secs(total)}.")
    if not after_ok:
        say("WARNING: the baseline failed after the mutants: the results are not trustworthy "
            f"(see {rel(LOGS)}/baseline-after-*.log)")

    if doc is not None and not interrupted:
        try:
            cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                       if l.startswith("model name"))
        except (OSError, StopIteration):
            cpu = platform.processor() or platform.machine()
        gpu = "an NVIDIA GPU present (not used)" if shutil.which("nvidia-smi") else "no GPU"
        ntests = sum(len(tests_of(k)) for k in suites)
        lines = [
            "# Mutation check of the CUDA kernels on the emulated device",
            "",
            "Proof that the CUDA conformance tests can fail: `scripts/cuda-mutants.py` injects "
            "realistic bugs into the kernels of `kernels/cuda/` one at a time, rebuilds the "
            "emulated device (`scripts/cuda-emu.sh`, see `docs/cuda-emu.md`) and runs the "
            "relevant CUDA tests on it. A mutant that the default (fiber) schedule misses is "
            "run again on the ThreadSanitizer build (`--sanitize thread`, `--test-threads 1`). "
            "The mutants are applied to "
            + ("a private copy of `kernels/cuda/` (`TREEPO_EMU_CUDA_DIR`), so the real sources "
               "are never modified." if isolated else
               "the real files, each restored byte for byte afterwards.")
            + " This file is generated: rerun the command to refresh it.",
            "",
            "- Command: `python3 scripts/cuda-mutants.py`",
            f"- Date: {started:%Y-%m-%d %H:%M %Z}",
            f"- Machine: {os.cpu_count()} cores ({cpu}), {gpu}",
            f"- Load at the start (`uptime`): `{load}`",
            f"- Run time: {fmt_secs(total)}",
            f"- Baseline: the {ntests} CUDA tests used pass without a mutant, before and after "
            "the mutants" + ("" if after_ok else " (**the run after the mutants FAILED**)"),
            f"- Result: {summary}.",
            "",
            md,
            "",
        ]
        if missed:
            lines += ["## Not caught", ""]
            for r in missed:
                lines.append(f"- `{r.m.id}` ({r.result}): {r.m.note or 'no note.'}")
            lines.append("")
        doc.write_text("\n".join(lines))
        say(f"wrote {rel(doc.resolve())}")
    return 1 if interrupted or not after_ok else 0


if __name__ == "__main__":
    sys.exit(main())
