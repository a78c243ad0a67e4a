// runtime.cpp — the execution engine of the emulated CUDA device: blocks of CUDA threads as
// cooperative fibers or OS threads, the block barrier and warp collectives with their
// detectors, mma.m16n8k16 from the PTX ISA fragment tables, and the kernel table.
//
// A collective (barrier, shuffle, vote, mma) is resolved by the last participant to arrive:
// it computes every participant's result, releases them and carries on; earlier arrivals park.
// Because every parked thread is counted, "all live threads parked and nothing complete" is
// detected at the moment it happens (a deadlock), in both schedules, without timeouts.
#include "runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

thread_local ThreadCtx* t_cur = nullptr;

// ------------------------------------------------------------------ kernel table
static std::map<std::string, KernelInfo>& table() {
    static std::map<std::string, KernelInfo> t;
    return t;
}

void register_kernel(const KernelInfo& k) {
    if (!table().emplace(k.name, k).second)
        fprintf(stderr, "treepo-cuda-emu: kernel %s is defined twice; keeping the first\n", k.name);
}

const KernelInfo* find_kernel(const char* name) {
    auto it = table().find(name);
    return it == table().end() ? nullptr : &it->second;
}

// ------------------------------------------------------------------ schedule
static constexpr bool threads_mode() {
#if defined(TREEPO_EMU_THREADS)
    return true;
#else
    return false;
#endif
}

const char* schedule_name() { return threads_mode() ? "threads" : "fibers"; }

// ------------------------------------------------------------------ fibers
#if defined(__x86_64__)
// treepo_emu_switch(save, load): saves the callee-saved registers on the current stack, stores
// the stack pointer in *save, switches to `load` and restores what it saved there.
// treepo_emu_entry: first frame of a new fiber; r12 = argument, r13 = function (never returns).
asm(R"(
    .text
    .globl treepo_emu_switch
    .hidden treepo_emu_switch
    .type treepo_emu_switch,@function
treepo_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size treepo_emu_switch, .-treepo_emu_switch
    .globl treepo_emu_entry
    .hidden treepo_emu_entry
    .type treepo_emu_entry,@function
treepo_emu_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size treepo_emu_entry, .-treepo_emu_entry
)");
extern "C" void treepo_emu_switch(void** save, void* load);
extern "C" void treepo_emu_entry();
#endif

static constexpr size_t kStack = 256 * 1024;

struct Fiber {
    char* mem = nullptr;  // guard page + stack
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

// The scheduler context of this worker thread (each worker runs its own blocks).
#if defined(__x86_64__)
static thread_local void* g_sched_sp;
#else
static thread_local ucontext_t g_sched_uc;
#endif

static void fiber_alloc(Fiber& f) {
    if (f.mem != nullptr) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* m = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "treepo-cuda-emu: out of memory for fiber stacks\n");
        abort();
    }
    mprotect(m, page, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    f.mem = static_cast<char*>(m);
}

static void fiber_init(Fiber& f, void (*fn)(void*), void* arg) {
    fiber_alloc(f);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
#if defined(__x86_64__)
    uintptr_t top = (uintptr_t)(f.mem + page + kStack) & ~(uintptr_t)15;
    void** sp = reinterpret_cast<void**>(top);
    *--sp = reinterpret_cast<void*>(&treepo_emu_entry);  // popped by `ret`; rsp is then 16-aligned
    *--sp = nullptr;                                     // rbp
    *--sp = nullptr;                                     // rbx
    *--sp = arg;                                         // r12
    *--sp = reinterpret_cast<void*>(fn);                 // r13
    *--sp = nullptr;                                     // r14
    *--sp = nullptr;                                     // r15
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.mem + page;
    f.uc.uc_stack.ss_size = kStack;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, (void (*)())fn, 1, arg);  // one pointer argument (glibc passes it whole)
#endif
}

static void fiber_resume(Fiber& f) {
#if defined(__x86_64__)
    treepo_emu_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched_uc, &f.uc);
#endif
}

static void fiber_yield(Fiber& f) {
#if defined(__x86_64__)
    treepo_emu_switch(&f.sp, g_sched_sp);
#else
    swapcontext(&f.uc, &g_sched_uc);
#endif
}

// ------------------------------------------------------------------ blocks
struct Abort {};  // unwinds a CUDA thread of a failed launch to its entry

enum class St : unsigned char { Ready, Parked, Done };

struct Slot {  // one thread's arrival at a collective
    int kind;
    unsigned mask;
    uint64_t in;
    int arg;
    int width;
    void* ptr;
    const char* file;
    int line;
    uint64_t out;
    bool at_bar;
};

struct Thread {
    ThreadCtx ctx;
    St st;
    Slot slot;
    Fiber* fiber;  // while it runs or is parked (fiber builds)
};

struct Block {
    const KernelInfo* k = nullptr;
    void** params = nullptr;
    unsigned n = 0;        // threads in the block
    unsigned live = 0;     // not exited
    unsigned parked = 0;   // at a collective
    std::vector<Thread> th;
    std::vector<unsigned> warp_parked;  // lanes parked at warp collectives, per warp
    std::vector<unsigned> warp_exited;  // lanes that returned from the kernel, per warp
    unsigned bar_count = 0;
    const char* bar_file = nullptr;
    int bar_line = 0;
    int bar_kind = 0;
    int bar_acc = 0;
    unsigned char* smem = nullptr;
    std::string error;
    bool threads = false;
    std::mutex mu;
    std::condition_variable cv;
};

static Block& cur_block() { return *static_cast<Block*>(t_cur->block); }
static Thread& cur_thread() { return *reinterpret_cast<Thread*>(t_cur); }  // ctx is the first member

static const char* kind_name(int kind) {
    static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                  "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync",
                                  "__syncwarp", "mma.m16n8k16.f16", "mma.m16n8k16.bf16"};
    return kind >= 0 && kind < (int)(sizeof(names) / sizeof(names[0])) ? names[kind] : "?";
}
static const char* bar_name(int kind) {
    static const char* names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_or",
                                  "__syncthreads_and"};
    return names[kind & 3];
}

static std::string site(const char* file, int line) {
    const char* slash = strrchr(file, '/');
    return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// Where every parked thread waits, grouped by site (for deadlock reports).
static std::string describe_parked(Block& b) {
    std::map<std::string, std::pair<unsigned, unsigned>> at;  // site -> (count, first tid)
    for (unsigned i = 0; i < b.n; ++i) {
        const Thread& t = b.th[i];
        if (t.st != St::Parked) continue;
        std::string key = std::string(t.slot.at_bar ? bar_name(t.slot.kind) : kind_name(t.slot.kind)) +
                          " at " + site(t.slot.file, t.slot.line);
        if (!t.slot.at_bar) key += fmt(" (mask %08x)", t.slot.mask);
        auto it = at.find(key);
        if (it == at.end()) at.emplace(key, std::make_pair(1u, i));
        else it->second.first++;
    }
    std::string s;
    for (auto& [key, v] : at) s += fmt("\n    %u thread(s) from tid %u: ", v.first, v.second) + key;
    s += fmt("\n    %u of %u threads exited", b.n - b.live, b.n);
    return s;
}

// Records the launch's first error; the caller then throws Abort (or returns, on exit paths).
static void set_error(Block& b, const std::string& msg) {
    if (b.error.empty()) b.error = msg;
    if (b.threads) b.cv.notify_all();
}

[[noreturn]] static void fail(Block& b, const std::string& msg) {
    set_error(b, msg);
    throw Abort{};
}

// Parks the calling thread until a collective releases it (st back to Ready).
static void park(Block& b, Thread& t, std::unique_lock<std::mutex>& lk) {
    t.st = St::Parked;
    b.parked++;
    if (b.parked == b.live) fail(b, "deadlock: every live thread waits at a collective that cannot complete:" + describe_parked(b));
    if (b.threads) {
        b.cv.wait(lk, [&] { return t.st != St::Parked || !b.error.empty(); });
    } else {
        fiber_yield(*t.fiber);
    }
    if (!b.error.empty()) throw Abort{};
}

static void release(Block& b, Thread& t) {
    t.st = St::Ready;
    b.parked--;
}

static std::unique_lock<std::mutex> guard(Block& b) {
    return b.threads ? std::unique_lock<std::mutex>(b.mu) : std::unique_lock<std::mutex>();
}

// ------------------------------------------------------------------ mma.m16n8k16
// PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type": groupID = laneid >> 2,
// threadID_in_group = laneid % 4; element i of a fragment is half (i & 1) of register i / 2.
//   A (16x16, .row): row = groupID for a0,a1,a4,a5, else groupID + 8;
//                    col = threadID_in_group * 2 + (i & 1), plus 8 for i >= 4.
//   B (16x8, .col):  row (k) = threadID_in_group * 2 + (i & 1), plus 8 for i >= 2; col = groupID.
//   C, D (16x8 f32): row = groupID for c0,c1, else groupID + 8; col = threadID_in_group * 2 + (i & 1).
static float cvt16(unsigned bits, bool bf16) {
    return bf16 ? bf16_bits_to_f32((unsigned short)bits) : f16_bits_to_f32((unsigned short)bits);
}

static void resolve_mma(Block& b, unsigned w, bool bf16) {
    float A[16][16], B[16][8], C[16][8];
    for (unsigned lane = 0; lane < 32; ++lane) {
        const MmaLane* op = static_cast<const MmaLane*>(b.th[w * 32 + lane].slot.ptr);
        const unsigned g = lane >> 2, t = lane & 3;
        for (unsigned i = 0; i < 8; ++i) {
            const unsigned bits = (op->a[i / 2] >> (16 * (i & 1))) & 0xffffu;
            const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
            const unsigned col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = cvt16(bits, bf16);
        }
        const unsigned breg[2] = {op->b0, op->b1};
        for (unsigned i = 0; i < 4; ++i) {
            const unsigned bits = (breg[i / 2] >> (16 * (i & 1))) & 0xffffu;
            const unsigned k = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
            B[k][g] = cvt16(bits, bf16);
        }
        for (unsigned i = 0; i < 4; ++i) C[i < 2 ? g : g + 8][t * 2 + (i & 1)] = op->d[i];
    }
    // Products of 16-bit floats are exact in f64; the sum is rounded once (the tensor core's
    // internal rounding is not modelled).
    float D[16][8];
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned c = 0; c < 8; ++c) {
            double s = C[r][c];
            for (unsigned k = 0; k < 16; ++k) s += (double)A[r][k] * (double)B[k][c];
            D[r][c] = (float)s;
        }
    for (unsigned lane = 0; lane < 32; ++lane) {
        const MmaLane* op = static_cast<const MmaLane*>(b.th[w * 32 + lane].slot.ptr);
        const unsigned g = lane >> 2, t = lane & 3;
        for (unsigned i = 0; i < 4; ++i) op->d[i] = D[i < 2 ? g : g + 8][t * 2 + (i & 1)];
    }
}

// ------------------------------------------------------------------ warp collectives
static void resolve_warp(Block& b, unsigned w, int kind, unsigned mask) {
    Thread* lanes = &b.th[w * 32];
    if (kind == MMA_F16 || kind == MMA_BF16) {
        resolve_mma(b, w, kind == MMA_BF16);
        return;
    }
    unsigned ballot = 0;
    for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && lanes[l].slot.in != 0) ballot |= 1u << l;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Slot& s = lanes[l].slot;
        const int width = s.width;
        const unsigned base = l & ~(unsigned)(width - 1);
        unsigned src = l;
        switch (kind) {
            case SHFL_IDX: src = base + (unsigned)(((s.arg % width) + width) % width); break;
            case SHFL_UP: src = (int)(l - base) >= s.arg ? l - (unsigned)s.arg : l; break;
            case SHFL_DOWN: src = (l - base) + (unsigned)s.arg < (unsigned)width ? l + (unsigned)s.arg : l; break;
            case SHFL_XOR: {
                const unsigned x = l ^ (unsigned)s.arg;
                src = (x & ~(unsigned)(width - 1)) > base ? l : x;  // later segments: own value
                break;
            }
            case VOTE_BALLOT: s.out = ballot; continue;
            case VOTE_ANY: s.out = ballot != 0; continue;
            case VOTE_ALL: s.out = ballot == mask; continue;
            default: s.out = 0; continue;
        }
        if (src >= 32 || !(mask >> src & 1u))
            fail(b, fmt("%s at %s: lane %u reads lane %u, which is not in the mask %08x (undefined on a GPU)",
                        kind_name(kind), site(s.file, s.line).c_str(), l, src, mask));
        s.out = lanes[src].slot.in;
    }
}

uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width, void* ptr,
                 const char* file, int line) {
    Block& b = cur_block();
    Thread& t = cur_thread();
    auto lk = guard(b);
    if (!b.error.empty()) throw Abort{};
    const unsigned tid = t.ctx.tid, lane = tid & 31, w = tid >> 5;
    auto at_s = [&] { return site(file, line); };
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
        fail(b, fmt("%s at %s: width %d is not a power of two in [1, 32]", kind_name(kind), at_s().c_str(), width));
    if (!(mask >> lane & 1u))
        fail(b, fmt("%s at %s: lane %u calls it with mask %08x that does not include itself", kind_name(kind), at_s().c_str(), lane, mask));
    const unsigned in_warp = b.n - w * 32 >= 32 ? 0xffffffffu : (1u << (b.n - w * 32)) - 1;
    if (mask & ~in_warp)
        fail(b, fmt("%s at %s: mask %08x names lanes that do not exist (the block has %u threads)", kind_name(kind), at_s().c_str(), mask, b.n));
    if ((kind == MMA_F16 || kind == MMA_BF16) && mask != 0xffffffffu)
        fail(b, fmt("%s at %s: .aligned mma needs all 32 lanes of the warp", kind_name(kind), at_s().c_str()));
    if (mask & b.warp_exited[w]) {
        const unsigned l = (unsigned)__builtin_ctz(mask & b.warp_exited[w]);
        fail(b, fmt("%s at %s (mask %08x): lane %u has exited", kind_name(kind), at_s().c_str(), mask, l));
    }
    t.slot = Slot{kind, mask, value, arg, width, ptr, file, line, 0, false};
    Thread* lanes = &b.th[w * 32];
    // Every arrival compares itself with one lane already parked in the warp (O(1)); the last
    // arrival compares itself with every participant (O(32) per collective, not per lane).
    auto mismatch = [&](unsigned l) {
        const Slot& o = lanes[l].slot;
        const bool overlaps = (mask >> l & 1u) || (o.mask >> lane & 1u);
        return overlaps && (o.kind != kind || o.mask != mask || o.file != file || o.line != line);
    };
    auto diverged = [&](unsigned l) {
        const Slot& o = lanes[l].slot;
        fail(b, fmt("warp %u diverged: lane %u is at %s (mask %08x) while lane %u waits at %s %s (mask %08x)",
                    w, lane, (std::string(kind_name(kind)) + " " + at_s()).c_str(), mask, l,
                    kind_name(o.kind), site(o.file, o.line).c_str(), o.mask));
    };
    const unsigned others = mask & ~(1u << lane);
    const unsigned waiting = b.warp_parked[w];
    if ((waiting & others) == others) {
        for (unsigned rest = waiting; rest != 0; rest &= rest - 1) {
            const unsigned l = (unsigned)__builtin_ctz(rest);
            if (mismatch(l)) diverged(l);
        }
        resolve_warp(b, w, kind, mask);
        b.warp_parked[w] &= ~others;
        for (unsigned rest = others; rest != 0; rest &= rest - 1) release(b, lanes[__builtin_ctz(rest)]);
        if (b.threads) b.cv.notify_all();
        return t.slot.out;
    }
    if (waiting != 0) {
        const unsigned l = (unsigned)__builtin_ctz(waiting);
        if (mismatch(l)) diverged(l);
    }
    b.warp_parked[w] |= 1u << lane;
    park(b, t, lk);
    return t.slot.out;
}

// ------------------------------------------------------------------ block barrier
static void complete_barrier(Block& b) {
    int result = 0;
    switch (b.bar_kind) {
        case BAR_COUNT: result = b.bar_acc; break;
        case BAR_OR: result = b.bar_acc > 0; break;
        case BAR_AND: result = b.bar_acc == (int)b.live; break;
        default: break;
    }
    for (unsigned i = 0; i < b.n; ++i) {
        Thread& t = b.th[i];
        if (t.st == St::Parked && t.slot.at_bar) {
            t.slot.out = (uint64_t)result;
            t.slot.at_bar = false;
            release(b, t);
        }
    }
    b.bar_count = 0;
    if (b.threads) b.cv.notify_all();
}

int block_barrier(int kind, int pred, const char* file, int line) {
    Block& b = cur_block();
    Thread& t = cur_thread();
    auto lk = guard(b);
    if (!b.error.empty()) throw Abort{};
    if (b.bar_count == 0) {
        b.bar_file = file;
        b.bar_line = line;
        b.bar_kind = kind;
        b.bar_acc = 0;
    } else if (b.bar_file != file || b.bar_line != line || b.bar_kind != kind) {
        fail(b, fmt("divergent barriers: thread %u reached %s at %s while %u thread(s) wait at %s at %s",
                    t.ctx.tid, bar_name(kind), site(file, line).c_str(), b.bar_count,
                    bar_name(b.bar_kind), site(b.bar_file, b.bar_line).c_str()));
    }
    b.bar_acc += pred != 0;
    b.bar_count++;
    t.slot = Slot{kind, 0, 0, 0, 0, nullptr, file, line, 0, true};
    if (b.bar_count == b.live) {
        if (b.live != b.n)
            fail(b, fmt("%s at %s reached by %u of %u threads: the others exited before it",
                        bar_name(kind), site(file, line).c_str(), b.live, b.n));
        // Count ourselves as parked so complete_barrier releases (and un-counts) us too.
        t.st = St::Parked;
        b.parked++;
        complete_barrier(b);
        return (int)t.slot.out;
    }
    park(b, t, lk);
    return (int)t.slot.out;
}

void* dynamic_smem() { return cur_block().smem; }

[[noreturn]] void trap(const char* file, int line) {
    Block& b = cur_block();
    auto lk = guard(b);
    fail(b, "__trap() at " + site(file, line));
}

// A CUDA thread returned from the kernel (or unwound after an error).
static void thread_exit(Block& b, Thread& t) {
    auto lk = guard(b);
    t.st = St::Done;
    b.live--;
    const unsigned lane = t.ctx.tid & 31, w = t.ctx.tid >> 5;
    b.warp_exited[w] |= 1u << lane;
    if (!b.error.empty()) return;
    for (unsigned l = 0; l < 32 && w * 32 + l < b.n; ++l) {
        const Thread& o = b.th[w * 32 + l];
        if ((b.warp_parked[w] >> l & 1u) && (o.slot.mask >> lane & 1u)) {
            set_error(b, fmt("lane %u of warp %u exited while lane %u waits for it at %s at %s (mask %08x)",
                             lane, w, l, kind_name(o.slot.kind), site(o.slot.file, o.slot.line).c_str(),
                             o.slot.mask));
            return;
        }
    }
    if (b.bar_count > 0 && b.bar_count == b.live) {
        set_error(b, fmt("%s at %s reached by %u of %u threads: the others exited before it",
                         bar_name(b.bar_kind), site(b.bar_file, b.bar_line).c_str(), b.live, b.n));
        return;
    }
    if (b.live > 0 && b.parked == b.live)
        set_error(b, "deadlock: every live thread waits at a collective that cannot complete:" + describe_parked(b));
}

static void run_thread(Block& b, Thread& t) {
    try {
        b.k->thunk(b.k->fn, b.params);
    } catch (Abort&) {
    }
    thread_exit(b, t);
}

static void fiber_main(void* arg) {
    Thread& t = *static_cast<Thread*>(arg);
    Block& b = *static_cast<Block*>(t.ctx.block);
    run_thread(b, t);
    fiber_yield(*t.fiber);  // the scheduler never resumes a finished fiber
    abort();
}

// This worker's fiber stacks. A CUDA thread takes one when it first runs and gives it back when
// it returns, so a kernel without collectives runs every thread of a block on one (cache-hot)
// stack; one that parks at a collective holds a stack per thread.
static thread_local std::vector<std::unique_ptr<Fiber>> t_fibers;
static thread_local std::vector<Fiber*> t_free_fibers;

static Fiber* take_fiber() {
    if (t_free_fibers.empty()) {
        t_fibers.push_back(std::make_unique<Fiber>());
        return t_fibers.back().get();
    }
    Fiber* f = t_free_fibers.back();
    t_free_fibers.pop_back();
    return f;
}

// Runs thread t until it parks or returns (taking a fiber stack on its first run).
static void step_fiber(Thread& t) {
    if (t.fiber == nullptr) {
        t.fiber = take_fiber();
        fiber_init(*t.fiber, &fiber_main, &t);
    }
    t_cur = &t.ctx;
    fiber_resume(*t.fiber);
    t_cur = nullptr;
    if (t.st == St::Done) {
        t_free_fibers.push_back(t.fiber);
        t.fiber = nullptr;
    }
}

// The fiber schedule, deterministic and adversarial: warp by warp, each warp running as far as
// it can (through its own warp collectives) before the next one starts, until every warp waits at
// the block barrier or has returned; even blocks take the warps in order, odd blocks in reverse.
// So a missing __syncthreads between one warp's shared-memory write and another warp's read (or
// a later write over what another warp still has to read) shows up in one direction or the other.
static void run_block_fibers(Block& b) {
    for (unsigned i = 0; i < b.n; ++i) b.th[i].fiber = nullptr;
    const unsigned warps = (b.n + 31) / 32;
    const uint3 bi = b.th[0].ctx.block_idx;
    const dim3 gd = b.th[0].ctx.grid_dim;
    const bool reverse = ((bi.x + (unsigned long long)gd.x * (bi.y + (unsigned long long)gd.y * bi.z)) & 1) != 0;
    for (;;) {
        bool ran = false;
        for (unsigned k = 0; k < warps && b.error.empty(); ++k) {
            const unsigned w = reverse ? warps - 1 - k : k;
            const unsigned lo = w * 32, hi = lo + 32 < b.n ? lo + 32 : b.n;
            for (bool again = true; again && b.error.empty();) {
                again = false;
                for (unsigned i = lo; i < hi && b.error.empty(); ++i) {
                    if (b.th[i].st != St::Ready) continue;
                    step_fiber(b.th[i]);
                    ran = again = true;
                }
            }
        }
        if (!b.error.empty() || b.live == 0) break;
        if (!ran) {  // unreachable while park() counts correctly; kept as a backstop
            set_error(b, "deadlock (scheduler): no runnable thread:" + describe_parked(b));
            break;
        }
    }
    for (unsigned i = 0; i < b.n; ++i)  // threads abandoned by a failed launch
        if (b.th[i].fiber != nullptr) {
            t_free_fibers.push_back(b.th[i].fiber);
            b.th[i].fiber = nullptr;
        }
}

// One OS thread per CUDA thread, kept between blocks and launches (thread creation dominates
// otherwise, above all under ThreadSanitizer): OS thread i runs CUDA thread i of every block.
// Blocks run one at a time; the pool's mutex orders one block's threads before the next's.
struct OsPool {
    std::mutex mu;
    std::condition_variable start, done;
    Block* block = nullptr;
    unsigned long long generation = 0;
    unsigned running = 0;
    unsigned size = 0;

    void grow(unsigned n) {
        for (; size < n; ++size) {
            std::thread([this, i = size] {
                unsigned long long seen = 0;
                for (;;) {
                    Block* b;
                    {
                        std::unique_lock<std::mutex> lk(mu);
                        start.wait(lk, [&] { return generation != seen && block != nullptr && i < block->n; });
                        seen = generation;
                        b = block;
                    }
                    t_cur = &b->th[i].ctx;
                    run_thread(*b, b->th[i]);
                    t_cur = nullptr;
                    std::lock_guard<std::mutex> lk(mu);
                    if (--running == 0) done.notify_all();
                }
            }).detach();
        }
    }
};

static void run_block_threads(Block& b) {
    // Never destroyed: its threads wait on it until the process exits.
    static OsPool& pool = *new OsPool();
    std::unique_lock<std::mutex> lk(pool.mu);
    pool.grow(b.n);
    pool.block = &b;
    pool.running = b.n;
    pool.generation++;
    pool.start.notify_all();
    pool.done.wait(lk, [&] { return pool.running == 0; });
    pool.block = nullptr;
}

// ------------------------------------------------------------------ watchdog
// A kernel that spins without reaching a collective cannot be preempted by the fiber scheduler:
// after TREEPO_EMU_TIMEOUT_S (default 600) seconds in one launch the process is aborted with
// the kernel's name instead of hanging CI.
static std::atomic<long long> g_launch_start{0};
static std::atomic<const char*> g_launch_name{nullptr};

static long long now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static void start_watchdog() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char* env = getenv("TREEPO_EMU_TIMEOUT_S");
        const long long limit = env ? atoll(env) : 600;
        std::thread([limit] {
            for (;;) {
                std::this_thread::sleep_for(std::chrono::seconds(1));
                const long long s = g_launch_start.load();
                if (s != 0 && now_s() - s > limit) {
                    fprintf(stderr, "treepo-cuda-emu: watchdog: kernel %s has run for more than %lld s "
                                    "(an endless loop?); aborting\n", g_launch_name.load(), limit);
                    abort();
                }
            }
        }).detach();
    });
}

// ------------------------------------------------------------------ grid
static std::mutex g_launch_mu;
static constexpr unsigned kCanary = 64;

// What one OS thread needs to run blocks: its CUDA threads (fiber stacks stay mapped between
// launches) and its dynamic shared memory.
struct Worker {
    std::vector<Thread> threads;
    std::vector<unsigned char> smem;
};

// Runs block `idx` (linear, x fastest) of `s` on `w`; returns "" or the block's error.
static std::string run_block(const LaunchSpec& s, Worker& w, unsigned long long idx) {
    const unsigned n = s.block.x * s.block.y * s.block.z;
    const unsigned bx = (unsigned)(idx % s.grid.x), by = (unsigned)(idx / s.grid.x % s.grid.y),
                   bz = (unsigned)(idx / ((unsigned long long)s.grid.x * s.grid.y));
    if (w.threads.size() < n) w.threads.resize(n);
    w.smem.resize(s.smem_bytes + kCanary);
    Block b;
    b.k = s.kernel;
    b.params = s.params;
    b.n = b.live = n;
    b.threads = threads_mode();
    b.warp_parked.assign((n + 31) / 32, 0u);
    b.warp_exited.assign((n + 31) / 32, 0u);
    memset(w.smem.data(), 0xff, s.smem_bytes);  // NaN in f32, f16 and bf16
    memset(w.smem.data() + s.smem_bytes, 0xa5, kCanary);
    b.smem = w.smem.data();
    b.th.swap(w.threads);
    for (unsigned i = 0; i < n; ++i) {
        Thread& t = b.th[i];
        t.ctx.thread_idx = uint3{i % s.block.x, (i / s.block.x) % s.block.y, i / (s.block.x * s.block.y)};
        t.ctx.block_idx = uint3{bx, by, bz};
        t.ctx.block_dim = s.block;
        t.ctx.grid_dim = s.grid;
        t.ctx.tid = i;
        t.ctx.block = &b;
        t.st = St::Ready;
        t.slot = Slot{};
    }
    if (b.threads) run_block_threads(b);
    else run_block_fibers(b);
    b.th.swap(w.threads);
    for (unsigned i = 0; i < kCanary && b.error.empty(); ++i)
        if (w.smem[s.smem_bytes + i] != 0xa5)
            b.error = fmt("dynamic shared memory overrun: a write %u byte(s) past the %u bytes "
                          "the launch provides", i + 1, s.smem_bytes);
    if (b.error.empty()) return "";
    return fmt("kernel %s, block (%u,%u,%u) of grid (%u,%u,%u), %u threads: ", s.kernel->name, bx, by,
               bz, s.grid.x, s.grid.y, s.grid.z, n) + b.error;
}

// Worker threads for parallel blocks (fiber builds), started once and kept.
struct Pool {
    std::mutex mu;
    std::condition_variable cv, done_cv;
    const LaunchSpec* spec = nullptr;
    unsigned long long total = 0;
    std::atomic<unsigned long long> next{0};
    unsigned long long first_bad = ~0ull;  // lowest failing block index
    std::string error;
    unsigned busy = 0;
    unsigned long long generation = 0;

    // Claims blocks until none is left or an earlier block failed.
    void drain(Worker& w) {
        for (;;) {
            const unsigned long long i = next.fetch_add(1);
            if (i >= total) return;
            {
                std::lock_guard<std::mutex> lk(mu);
                if (i > first_bad) return;
            }
            std::string e = run_block(*spec, w, i);
            if (!e.empty()) {
                std::lock_guard<std::mutex> lk(mu);
                if (i < first_bad) {
                    first_bad = i;
                    error = std::move(e);
                }
            }
        }
    }
};

static unsigned worker_count() {
    static const unsigned n = [] {
        const char* e = getenv("TREEPO_EMU_WORKERS");
        long v = e ? atol(e) : (long)std::thread::hardware_concurrency();
        return (unsigned)(v < 1 ? 1 : (v > 64 ? 64 : v));
    }();
    return threads_mode() ? 1u : n;
}

static Pool& pool() {
    static Pool* p = [] {
        auto* pl = new Pool();
        for (unsigned i = 1; i < worker_count(); ++i) {
            std::thread([pl] {
                Worker w;
                unsigned long long seen = 0;
                for (;;) {
                    {
                        std::unique_lock<std::mutex> lk(pl->mu);
                        pl->cv.wait(lk, [&] { return pl->generation != seen; });
                        seen = pl->generation;
                        pl->busy++;
                    }
                    pl->drain(w);
                    std::lock_guard<std::mutex> lk(pl->mu);
                    if (--pl->busy == 0) pl->done_cv.notify_all();
                }
            }).detach();
        }
        return pl;
    }();
    return *p;
}

// TREEPO_EMU_PROFILE=1: wall time and launch count per kernel, printed to stderr at exit
// (which kernels dominate an emulated run; not a GPU performance figure).
struct Profile {
    std::map<std::string, std::pair<double, long>> by_kernel;
    ~Profile() {
        if (by_kernel.empty()) return;
        std::vector<std::pair<double, std::string>> rows;
        for (auto& [k, v] : by_kernel) rows.emplace_back(v.first, k + " (" + std::to_string(v.second) + " launches)");
        std::sort(rows.rbegin(), rows.rend());
        fprintf(stderr, "treepo-cuda-emu profile (seconds per kernel):\n");
        for (auto& [t, k] : rows) fprintf(stderr, "  %9.3f  %s\n", t, k.c_str());
    }
};
static Profile* profile() {
    static Profile* p = getenv("TREEPO_EMU_PROFILE") ? new Profile() : nullptr;
    static struct Flush {
        ~Flush() { delete p; }
    } flush;
    return p;
}

std::string run_grid(const LaunchSpec& s) {
    std::lock_guard<std::mutex> one_at_a_time(g_launch_mu);
    Profile* prof = profile();
    const auto t0 = std::chrono::steady_clock::now();
    struct Record {
        Profile* prof;
        const char* name;
        std::chrono::steady_clock::time_point t0;
        ~Record() {
            if (!prof) return;
            auto& e = prof->by_kernel[name];
            e.first += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            e.second += 1;
        }
    } record{prof, s.kernel->name, t0};
    start_watchdog();
    g_launch_name = s.kernel->name;
    g_launch_start = now_s();
    static Worker self;  // the launching thread's (launches are serialized)
    const unsigned long long total = (unsigned long long)s.grid.x * s.grid.y * s.grid.z;
    std::string err;
    if (worker_count() == 1 || total == 1) {
        for (unsigned long long i = 0; i < total && err.empty(); ++i) err = run_block(s, self, i);
    } else {
        Pool& p = pool();
        {
            std::lock_guard<std::mutex> lk(p.mu);
            p.spec = &s;
            p.total = total;
            p.next = 0;
            p.first_bad = ~0ull;
            p.error.clear();
            p.generation++;
            p.busy++;  // this thread
        }
        p.cv.notify_all();
        p.drain(self);
        std::unique_lock<std::mutex> lk(p.mu);
        p.busy--;
        p.done_cv.wait(lk, [&] { return p.busy == 0; });
        err = p.error;
        p.spec = nullptr;
    }
    g_launch_start = 0;
    return err;
}

}  // namespace emu
