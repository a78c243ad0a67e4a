// driver.cpp — the stand-in libcuda.so: the CUDA driver API calls cudarc makes, over host memory
// and the host-compiled kernels of runtime.cpp.
//
// One device (ordinal 0) that reports compute capability 8.0 (override: TREEPO_EMU_CC=90);
// device pointers are host addresses; every stream operation runs synchronously in issue order
// (a valid schedule of a CUDA stream). cuModuleLoadData reads the kernel names and static shared
// memory sizes out of the cubin that NVRTC produced (ELF symbol and section tables) or out of PTX
// text, so cuModuleGetFunction fails for a name the module does not define — exactly as on a GPU —
// and succeeds only when the same kernel was also compiled for the host.
//
// Checks a GPU makes too, with the same error codes: launch geometry limits, dynamic shared
// memory above 48 KiB without CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, copies and memsets
// outside an allocation (CUDA_ERROR_INVALID_VALUE). Checks it adds: every pointer parameter of a
// launch must be null or point into (or one past) a live allocation, and a kernel fault (see
// runtime.h) returns CUDA_ERROR_LAUNCH_FAILED with the reason printed to stderr and kept for
// treepo_emu_last_error().
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

#define API extern "C" __attribute__((visibility("default")))

namespace {

constexpr size_t kTotalMem = 24ull << 30;
constexpr unsigned kDefaultSmem = 48 * 1024;

int cc() {
    static const int v = [] {
        const char* s = getenv("TREEPO_EMU_CC");
        return s ? atoi(s) : 80;
    }();
    return v;
}
unsigned smem_optin() { return cc() >= 90 ? 232448u : 166912u; }

struct Ctx {
    int dummy;
};
Ctx g_ctx;
thread_local CUcontext t_ctx = nullptr;

std::mutex g_mu;                                 // guards the tables below
std::map<uintptr_t, size_t> g_allocs;             // base -> bytes
std::string g_last_error;

struct Module {
    std::map<std::string, unsigned> kernels;  // name -> static shared bytes
};
struct Function {
    const emu::KernelInfo* kernel;
    std::string name;
    unsigned static_smem;
    unsigned max_dynamic_smem;
};
std::set<Module*> g_modules;
std::set<Function*> g_functions;

// The allocation holding [p, p + bytes), or none. `bytes` may be 0 (one-past-the-end allowed).
bool in_alloc(uintptr_t p, size_t bytes) {
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return false;
    --it;
    return p >= it->first && p + bytes <= it->first + it->second;
}

CUresult check_range(CUdeviceptr p, size_t bytes, const char* what) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (bytes == 0 || in_alloc((uintptr_t)p, bytes)) return CUDA_SUCCESS;
    fprintf(stderr, "treepo-cuda-emu: %s of %zu bytes at 0x%llx is outside every allocation\n", what,
            bytes, p);
    return CUDA_ERROR_INVALID_VALUE;
}

// ---- cubin (ELF64) and PTX parsing: the kernel names a module defines.
template <typename T>
bool rd(const unsigned char* img, size_t size, size_t off, T* out) {
    if (off + sizeof(T) > size || off + sizeof(T) < off) return false;
    memcpy(out, img + off, sizeof(T));
    return true;
}

struct Shdr {
    uint32_t name, type;
    uint64_t flags, addr, offset, size;
    uint32_t link, info;
    uint64_t align, entsize;
};
struct Sym {
    uint32_t name;
    unsigned char info, other;
    uint16_t shndx;
    uint64_t value, size;
};

bool parse_cubin(const unsigned char* img, size_t size, Module& m) {
    uint64_t shoff;
    uint16_t shentsize, shnum, shstrndx;
    if (size < 64 || img[4] != 2 /* ELFCLASS64 */ || !rd(img, size, 0x28, &shoff) ||
        !rd(img, size, 0x3a, &shentsize) || !rd(img, size, 0x3c, &shnum) ||
        !rd(img, size, 0x3e, &shstrndx) || shentsize != sizeof(Shdr) || shstrndx >= shnum)
        return false;
    std::vector<Shdr> sh(shnum);
    for (unsigned i = 0; i < shnum; ++i)
        if (!rd(img, size, shoff + (size_t)i * sizeof(Shdr), &sh[i])) return false;
    auto str = [&](const Shdr& tab, uint32_t off) -> std::string {
        if (tab.offset + off >= size) return "";
        const char* s = reinterpret_cast<const char*>(img + tab.offset + off);
        return std::string(s, strnlen(s, size - (tab.offset + off)));
    };
    std::map<std::string, unsigned> shared;  // kernel -> .nv.shared.<kernel> size
    for (unsigned i = 0; i < shnum; ++i) {
        const std::string n = str(sh[shstrndx], sh[i].name);
        if (n.rfind(".nv.shared.", 0) == 0) shared[n.substr(11)] = (unsigned)sh[i].size;
    }
    for (unsigned i = 0; i < shnum; ++i) {
        if (sh[i].type != 2 /* SHT_SYMTAB */ || sh[i].link >= shnum) continue;
        const Shdr& strtab = sh[sh[i].link];
        for (uint64_t off = 0; off + sizeof(Sym) <= sh[i].size; off += sizeof(Sym)) {
            Sym s;
            if (!rd(img, size, sh[i].offset + off, &s)) return false;
            const bool func = (s.info & 0xf) == 2, global = (s.info >> 4) == 1;
            if (!func || !global) continue;
            const std::string n = str(strtab, s.name);
            m.kernels[n] = shared.count(n) ? shared[n] : 0u;
        }
    }
    return true;
}

bool parse_ptx(const char* text, size_t size, Module& m) {
    const std::string s(text, strnlen(text, size));
    size_t at = 0;
    bool any = false;
    while ((at = s.find(".entry", at)) != std::string::npos) {
        at += 6;
        while (at < s.size() && (s[at] == ' ' || s[at] == '\t')) ++at;
        size_t end = at;
        while (end < s.size() && (isalnum((unsigned char)s[end]) || s[end] == '_' || s[end] == '$')) ++end;
        if (end > at) {
            m.kernels[s.substr(at, end - at)] = 0;
            any = true;
        }
    }
    return any || s.find(".version") != std::string::npos;
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

// ------------------------------------------------------------------ init, device, context
API CUresult cuInit(unsigned) { return CUDA_SUCCESS; }
API CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetCount(int* n) {
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "treepo emulated CUDA device (CPU, sm_%d, %s)", cc(), emu::schedule_name());
    return CUDA_SUCCESS;
}
API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = kTotalMem;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    memset(uuid, 0, 16);
    memcpy(uuid, "treepo-emu", 10);
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
API CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
        case 1: *v = 1024; break;                 // max threads per block
        case 2: case 3: *v = 1024; break;         // max block dim x, y
        case 4: *v = 64; break;                   // max block dim z
        case 5: *v = 2147483647; break;           // max grid dim x
        case 6: case 7: *v = 65535; break;        // max grid dim y, z
        case 8: *v = (int)kDefaultSmem; break;    // shared memory per block
        case 9: *v = 65536; break;                // constant memory
        case 10: *v = 32; break;                  // warp size
        case 12: case 82: *v = 65536; break;      // registers per block / SM
        case 13: *v = 1410000; break;             // clock rate (kHz)
        case 16: *v = 108; break;                 // multiprocessors
        case 39: *v = 2048; break;                // threads per SM
        case 41: *v = 1; break;                   // unified addressing
        case 75: *v = cc() / 10; break;           // compute capability
        case 76: *v = cc() % 10; break;
        case 81: *v = (int)smem_optin() + 1024; break;  // shared memory per SM
        case 97: *v = (int)smem_optin(); break;   // opt-in shared memory per block
        case 115: *v = 0; break;                  // memory pools: no (synchronous allocation)
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) {
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *c = &g_ctx;
    return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { return d == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }
API CUresult cuCtxSetCurrent(CUcontext c) {
    if (c != nullptr && c != &g_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    t_ctx = c;
    return CUDA_SUCCESS;
}
API CUresult cuCtxGetCurrent(CUcontext* c) {
    *c = t_ctx;
    return CUDA_SUCCESS;
}
API CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return CUDA_SUCCESS;
}
API CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }
API CUresult cuCtxSetLimit(int, size_t) { return CUDA_SUCCESS; }
API CUresult cuCtxGetLimit(size_t* v, int) {
    *v = 0;
    return CUDA_SUCCESS;
}
API CUresult cuCtxSetCacheConfig(int) { return CUDA_SUCCESS; }
API CUresult cuCtxGetCacheConfig(int* v) {
    *v = 0;
    return CUDA_SUCCESS;
}
API CUresult cuCtxSetFlags(unsigned) { return CUDA_SUCCESS; }
API CUresult cuCtxGetStreamPriorityRange(int* lo, int* hi) {
    if (lo) *lo = 0;
    if (hi) *hi = 0;
    return CUDA_SUCCESS;
}
API CUresult cuGetErrorName(CUresult e, const char** s) {
    switch (e) {
        case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; break;
        case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case CUDA_ERROR_INVALID_DEVICE: *s = "CUDA_ERROR_INVALID_DEVICE"; break;
        case CUDA_ERROR_INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; break;
        case CUDA_ERROR_INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; break;
        case CUDA_ERROR_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
        case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
        case CUDA_ERROR_LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; break;
        default: *s = "CUDA_ERROR_UNKNOWN"; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}
API CUresult cuGetErrorString(CUresult e, const char** s) {
    if (e == CUDA_ERROR_LAUNCH_FAILED) {
        *s = "unspecified launch failure (emulated device: see treepo-cuda-emu's message on stderr)";
        return CUDA_SUCCESS;
    }
    return cuGetErrorName(e, s);
}

// ------------------------------------------------------------------ memory
static CUresult do_alloc(CUdeviceptr* p, size_t bytes) {
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    void* m = nullptr;
    // Exact size (ASan builds see every overrun); 256-byte alignment like cudaMalloc.
    if (posix_memalign(&m, 256, bytes == 0 ? 1 : bytes) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    std::lock_guard<std::mutex> lk(g_mu);
    g_allocs[(uintptr_t)m] = bytes;
    *p = (CUdeviceptr)(uintptr_t)m;
    return CUDA_SUCCESS;
}
static CUresult do_free(CUdeviceptr p) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return CUDA_ERROR_INVALID_VALUE;
    g_allocs.erase(it);
    free((void*)(uintptr_t)p);
    return CUDA_SUCCESS;
}
API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) { return do_alloc(p, bytes); }
// The allocation holding `p`: how callers validate memory they did not allocate themselves.
API CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin()) return CUDA_ERROR_NOT_FOUND;
    --it;
    if ((uintptr_t)p >= it->first + (it->second == 0 ? 1 : it->second)) return CUDA_ERROR_NOT_FOUND;
    if (base) *base = (CUdeviceptr)it->first;
    if (size) *size = it->second;
    return CUDA_SUCCESS;
}
API CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return do_alloc(p, bytes); }
API CUresult cuMemFree_v2(CUdeviceptr p) { return do_free(p); }
API CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return do_free(p); }
API CUresult cuMemGetInfo_v2(size_t* free_b, size_t* total) {
    std::lock_guard<std::mutex> lk(g_mu);
    size_t used = 0;
    for (auto& a : g_allocs) used += a.second;
    if (free_b) *free_b = used < kTotalMem ? kTotalMem - used : 0;
    if (total) *total = kTotalMem;
    return CUDA_SUCCESS;
}
API CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    *p = malloc(bytes == 0 ? 1 : bytes);
    return *p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
API CUresult cuMemFreeHost(void* p) {
    free(p);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    if (CUresult r = check_range(dst, n, "cuMemcpyHtoD destination")) return r;
    if (n) memcpy((void*)(uintptr_t)dst, src, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    return cuMemcpyHtoD_v2(dst, src, n);
}
API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    if (CUresult r = check_range(src, n, "cuMemcpyDtoH source")) return r;
    if (n) memcpy(dst, (const void*)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream) {
    return cuMemcpyDtoH_v2(dst, src, n);
}
API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (CUresult r = check_range(dst, n, "cuMemcpyDtoD destination")) return r;
    if (CUresult r = check_range(src, n, "cuMemcpyDtoD source")) return r;
    if (n) memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    return cuMemcpyDtoD_v2(dst, src, n);
}
API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    if (CUresult r = check_range(dst, n, "cuMemsetD8 destination")) return r;
    if (n) memset((void*)(uintptr_t)dst, v, n);
    return CUDA_SUCCESS;
}
API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
    return cuMemsetD8_v2(dst, v, n);
}
API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    if (CUresult r = check_range(dst, n * 4, "cuMemsetD32 destination")) return r;
    unsigned* p = (unsigned*)(uintptr_t)dst;
    for (size_t i = 0; i < n; ++i) p[i] = v;
    return CUDA_SUCCESS;
}
API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream) {
    return cuMemsetD32_v2(dst, v, n);
}

// ------------------------------------------------------------------ streams and events
struct Stream {
    int dummy;
};
struct Event {
    double ms;
};
API CUresult cuStreamCreate(CUstream* s, unsigned) {
    *s = new Stream{0};
    return CUDA_SUCCESS;
}
API CUresult cuStreamCreateWithPriority(CUstream* s, unsigned, int) { return cuStreamCreate(s, 0); }
API CUresult cuStreamDestroy_v2(CUstream s) {
    delete static_cast<Stream*>(s);
    return CUDA_SUCCESS;
}
API CUresult cuStreamSynchronize(CUstream) { return CUDA_SUCCESS; }
// Every stream (and the null stream) belongs to the one primary context.
API CUresult cuStreamGetCtx(CUstream, CUcontext* c) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    *c = &g_ctx;
    return CUDA_SUCCESS;
}
API CUresult cuStreamQuery(CUstream) { return CUDA_SUCCESS; }
API CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return CUDA_SUCCESS; }
API CUresult cuLaunchHostFunc(CUstream, void (*fn)(void*), void* data) {
    fn(data);
    return CUDA_SUCCESS;
}
API CUresult cuEventCreate(CUevent* e, unsigned) {
    *e = new Event{0.0};
    return CUDA_SUCCESS;
}
API CUresult cuEventDestroy_v2(CUevent e) {
    delete static_cast<Event*>(e);
    return CUDA_SUCCESS;
}
API CUresult cuEventRecord(CUevent e, CUstream) {
    static_cast<Event*>(e)->ms = now_ms();
    return CUDA_SUCCESS;
}
API CUresult cuEventQuery(CUevent) { return CUDA_SUCCESS; }
API CUresult cuEventSynchronize(CUevent) { return CUDA_SUCCESS; }
API CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    *ms = (float)(static_cast<Event*>(b)->ms - static_cast<Event*>(a)->ms);
    return CUDA_SUCCESS;
}
API CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }

// ------------------------------------------------------------------ modules and launches
API CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    if (!out || !image) return CUDA_ERROR_INVALID_VALUE;
    const unsigned char* img = static_cast<const unsigned char*>(image);
    auto* m = new Module();
    bool ok;
    if (memcmp(img, "\x7f" "ELF", 4) == 0) {
        // The ELF header does not carry the file size; section offsets are bounded by 64 MiB.
        ok = parse_cubin(img, 64u << 20, *m);
    } else {
        ok = parse_ptx(static_cast<const char*>(image), 64u << 20, *m);
    }
    if (!ok) {
        delete m;
        return CUDA_ERROR_INVALID_IMAGE;
    }
    std::lock_guard<std::mutex> lk(g_mu);
    g_modules.insert(m);
    *out = m;
    return CUDA_SUCCESS;
}
API CUresult cuModuleUnload(CUmodule mod) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_modules.erase(static_cast<Module*>(mod))) return CUDA_ERROR_INVALID_HANDLE;
    delete static_cast<Module*>(mod);
    return CUDA_SUCCESS;
}
API CUresult cuModuleGetFunction(CUfunction* f, CUmodule mod, const char* name) {
    if (!f || !name) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g_mu);
    auto* m = static_cast<Module*>(mod);
    if (!g_modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    auto it = m->kernels.find(name);
    if (it == m->kernels.end()) return CUDA_ERROR_NOT_FOUND;
    const emu::KernelInfo* k = emu::find_kernel(name);
    if (!k) {
        fprintf(stderr, "treepo-cuda-emu: the module defines kernel %s but the emulator was built "
                        "without it: rebuild it (scripts/cuda-emu.sh)\n", name);
        return CUDA_ERROR_NOT_FOUND;
    }
    auto* fn = new Function{k, name, it->second, kDefaultSmem > it->second ? kDefaultSmem - it->second : 0u};
    g_functions.insert(fn);
    *f = fn;
    return CUDA_SUCCESS;
}
API CUresult cuFuncGetAttribute(int* v, int attr, CUfunction f) {
    auto* fn = static_cast<Function*>(f);
    switch (attr) {
        case 0: *v = 1024; break;
        case 1: *v = (int)fn->static_smem; break;
        case 4: *v = 32; break;
        case 5: case 6: *v = cc(); break;
        case 8: *v = (int)fn->max_dynamic_smem; break;
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}
API CUresult cuFuncSetAttribute(CUfunction f, int attr, int v) {
    auto* fn = static_cast<Function*>(f);
    if (attr == 8) {
        if (v < 0 || (unsigned)v + fn->static_smem > smem_optin()) return CUDA_ERROR_INVALID_VALUE;
        fn->max_dynamic_smem = (unsigned)v;
    }
    return CUDA_SUCCESS;
}
API CUresult cuFuncSetCacheConfig(CUfunction, int) { return CUDA_SUCCESS; }

API CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                            unsigned by, unsigned bz, unsigned smem, CUstream, void** params,
                            void** extra) {
    auto* fn = static_cast<Function*>(f);
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (!g_functions.count(fn)) return CUDA_ERROR_INVALID_HANDLE;
    }
    if (extra != nullptr) return CUDA_ERROR_NOT_SUPPORTED;
    const emu::KernelInfo* k = fn->kernel;
    auto reject = [&](const std::string& why) {
        fprintf(stderr, "treepo-cuda-emu: launch of %s rejected: %s\n", k->name, why.c_str());
        std::lock_guard<std::mutex> lk(g_mu);
        g_last_error = std::string(k->name) + ": " + why;
        return CUDA_ERROR_INVALID_VALUE;
    };
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0)
        return reject("a grid or block dimension is 0");
    if ((unsigned long long)bx * by * bz > 1024 || bx > 1024 || by > 1024 || bz > 64)
        return reject("block (" + std::to_string(bx) + "," + std::to_string(by) + "," + std::to_string(bz) +
                      ") exceeds the device limits (1024 threads, z <= 64)");
    if (gx > 2147483647u || gy > 65535 || gz > 65535) return reject("grid dimension above the device limit");
    if (smem > fn->max_dynamic_smem)
        return reject(std::to_string(smem) + " bytes of dynamic shared memory (+" +
                      std::to_string(fn->static_smem) + " static) exceed the function's limit of " +
                      std::to_string(fn->max_dynamic_smem) +
                      " (raise it with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)");
    if (params == nullptr && k->nparams > 0) return reject("kernelParams is null");
    {
        std::lock_guard<std::mutex> lk(g_mu);
        for (unsigned i = 0; i < k->nparams && i < 64; ++i) {
            if (!(k->ptr_mask >> i & 1u)) continue;
            uintptr_t p;
            memcpy(&p, params[i], sizeof p);
            if (p != 0 && !in_alloc(p, 0)) {
                char buf[160];
                snprintf(buf, sizeof buf, "pointer parameter %u (0x%lx) is not inside any allocation", i,
                         (unsigned long)p);
                g_last_error = std::string(k->name) + ": " + buf;
                fprintf(stderr, "treepo-cuda-emu: launch of %s: %s\n", k->name, buf);
                return CUDA_ERROR_INVALID_VALUE;
            }
        }
    }
    emu::LaunchSpec spec{k, dim3{gx, gy, gz}, dim3{bx, by, bz}, smem, params};
    const std::string err = emu::run_grid(spec);
    if (!err.empty()) {
        fprintf(stderr, "treepo-cuda-emu: %s\n", err.c_str());
        std::lock_guard<std::mutex> lk(g_mu);
        g_last_error = err;
        return CUDA_ERROR_LAUNCH_FAILED;
    }
    return CUDA_SUCCESS;
}

// ------------------------------------------------------------------ emulator-only entry points
// The last launch failure's message (empty if none); for tests and tools.
API const char* treepo_emu_last_error() {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lk(g_mu);
    copy = g_last_error;
    return copy.c_str();
}
// Conversions exactly as the device code sees them (a test compares them with Rust's `half`).
API unsigned short treepo_emu_f32_to_f16(float x) { return emu::f32_to_f16_bits(x); }
API float treepo_emu_f16_to_f32(unsigned short h) { return emu::f16_bits_to_f32(h); }
API unsigned short treepo_emu_f32_to_bf16(float x) { return emu::f32_to_bf16_bits(x); }
API float treepo_emu_bf16_to_f32(unsigned short h) { return emu::bf16_bits_to_f32(h); }
