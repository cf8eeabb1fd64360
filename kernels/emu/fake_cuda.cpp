// A fake libcuda.so.1 for machines without a GPU: implements the driver calls that cust and the
// trainer make, with "device memory" in host memory and kernel launches running the kernels of
// kernels/cuda/*.cu compiled as C++ (see emu.h). It lets `lsoftmax gpu-check --quick` and
// `lsoftmax train --device cuda` run the whole CUDA code path on a CPU (slowly): the host-side
// orchestration, the kernels' indexing and math. It says nothing about real GPU behaviour
// (memory model, timing, fp contraction). Every buffer has a guard page after its end
// (FAKE_CUDA_GUARD=before: before its start), and blocks and threads run in index order
// (FAKE_CUDA_ORDER=reverse: the other way); CI runs the checks both ways. Built by
// scripts/cuda_emu.sh.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "emu.h"
#include "kernels.h"

thread_local emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local ucontext_t* emu_self = nullptr;
thread_local ucontext_t* emu_sched = nullptr;

namespace {

// Whether the environment variable `name` is `alt` (false when unset, empty or `dflt`); any other
// value aborts with a message.
bool env_choice(const char* name, const char* dflt, const char* alt) {
    const char* v = std::getenv(name);
    if (!v || !*v || std::strcmp(v, dflt) == 0) return false;
    if (std::strcmp(v, alt) == 0) return true;
    std::fprintf(stderr, "fake libcuda: %s must be %s or %s, not '%s'\n", name, dflt, alt, v);
    std::abort();
}

// FAKE_CUDA_ORDER=reverse runs the blocks of a grid, and the threads of each barrier phase, in
// reverse order (the default, forward, runs them in index order). A real GPU promises no order
// at all, so a kernel must give the same result both ways: a missing __syncthreads between one
// thread's write of shared memory and another's read, or a block that reads what another block
// of the same launch writes, shows as a difference against the CPU in one of the two orders.
bool reverse_order() {
    static const bool reverse = env_choice("FAKE_CUDA_ORDER", "forward", "reverse");
    return reverse;
}

// The i-th of n in the launch order.
unsigned nth(unsigned i, unsigned n) { return reverse_order() ? n - 1 - i : i; }

// Device buffers sit against an inaccessible guard page, right after their last byte (the
// default) or, under FAKE_CUDA_GUARD=before, right before their first (the buffer then starts on
// a page boundary). A kernel that reads or writes past either end of a buffer faults at once,
// and the fault names the kernel, instead of reading neighbouring data or garbage that a check
// might not notice. Global loads in the kernels are scalar, so a buffer ending flush with the
// page (its start aligned only to its size's factors) is fine for them.
struct Alloc {
    char* base;   // the mapping: guard page and buffer pages
    size_t len;   // its length
    size_t bytes; // what was asked for
};
std::map<uintptr_t, Alloc>& allocs() {
    static std::map<uintptr_t, Alloc> m;
    return m;
}
bool guard_before() {
    static const bool before = env_choice("FAKE_CUDA_GUARD", "after", "before");
    return before;
}
size_t page_size() {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

// The kernel being run (null outside launches), for the fault message.
const char* running_kernel = nullptr;
struct sigaction previous_segv;

void on_segv(int sig, siginfo_t* info, void* ctx) {
    if (!running_kernel) {
        // Not ours (e.g. Rust's stack-overflow guard): hand the fault back.
        sigaction(SIGSEGV, &previous_segv, nullptr);
        return;
    }
    const uintptr_t a = (uintptr_t)info->si_addr;
    char msg[256];
    int n = std::snprintf(msg, sizeof msg, "fake libcuda: kernel %s touched %p, outside every device buffer\n",
                          running_kernel, info->si_addr);
    for (auto& [user, al] : allocs()) {
        if (a >= user + al.bytes && a < user + al.bytes + page_size())
            n = std::snprintf(msg, sizeof msg,
                              "fake libcuda: kernel %s touched %zu bytes past the end of a %zu-byte device buffer\n",
                              running_kernel, (size_t)(a - user - al.bytes), al.bytes);
        else if (a < user && a + page_size() >= user)
            n = std::snprintf(msg, sizeof msg,
                              "fake libcuda: kernel %s touched %zu bytes before the start of a %zu-byte device "
                              "buffer\n",
                              running_kernel, (size_t)(user - a), al.bytes);
    }
    if (write(2, msg, n > 0 ? (size_t)n : 0) < 0) {
    }
    (void)sig;
    (void)ctx;
    _exit(86);
}

// The most threads per block each loaded kernel allows: its PTX's `.maxntid` (from
// __launch_bounds__), else the hardware's 1024. A launch beyond it fails on a GPU, so here too.
std::map<std::string, unsigned>& max_threads() {
    static std::map<std::string, unsigned> m;
    return m;
}

// Reads `.entry NAME(` ... `.maxntid X, Y, Z` (before the body's `{`) from a module's PTX.
void read_max_threads(const char* ptx) {
    for (const char* e = std::strstr(ptx, ".entry "); e; e = std::strstr(e + 1, ".entry ")) {
        const char* name = e + 7;
        const char* paren = std::strchr(name, '(');
        const char* body = std::strchr(name, '{');
        if (!paren || !body) break;
        unsigned limit = 1024;
        const char* mx = std::strstr(paren, ".maxntid");
        unsigned x = 1, y = 1, z = 1;
        if (mx && mx < body && std::sscanf(mx, ".maxntid %u, %u, %u", &x, &y, &z) >= 1) limit = x * y * z;
        max_threads()[std::string(name, paren - name)] = limit;
    }
}

// Marks a kernel as running for the fault handler.
struct Running {
    explicit Running(const char* name) { running_kernel = name; }
    ~Running() { running_kernel = nullptr; }
};

void set_block(unsigned b, emu_dim3 g) {
    blockIdx.x = b % g.x;
    blockIdx.y = (b / g.x) % g.y;
    blockIdx.z = b / (g.x * g.y);
}

}  // namespace

// Only the driver API is exported: the kernels stay hidden (-fvisibility=hidden), or names such
// as sgemm_nn would interpose on OpenBLAS's own exported functions in the same process.
#pragma GCC visibility push(default)
extern "C" {
typedef int CUresult;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned) {
    static bool installed = false;
    if (!installed) {
        struct sigaction sa {};
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv);
        installed = true;
    }
    return 0;
}
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
        case 75: *v = 9; break;  // compute capability major
        case 76: *v = 0; break;  // minor
        case 16: *v = 64; break;  // SMs: enough that the checks exercise split-K
        default: *v = 1;
    }
    return 0;
}
CUresult cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, len, "CPU emulation (fake libcuda)");
    return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* b, int) { *b = size_t(8) << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = (void*)0x1; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuDevicePrimaryCtxSetFlags_v2(int, unsigned) { return 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxSynchronize() { return 0; }
CUresult cuStreamCreateWithPriority(void** s, unsigned, int) { *s = (void*)0x2; return 0; }
CUresult cuStreamDestroy_v2(void*) { return 0; }
CUresult cuStreamSynchronize(void*) { return 0; }
// FAKE_CUDA_REFUSE_PTX=TEXT: refuse (CUDA_ERROR_INVALID_PTX) every module whose PTX contains
// TEXT, as a driver that cannot JIT it would (tests of the optional modules).
static CUresult load_module(void** m, const void* image) {
    const char* ptx = static_cast<const char*>(image);
    const char* refuse = std::getenv("FAKE_CUDA_REFUSE_PTX");
    if (refuse && *refuse && std::strstr(ptx, refuse)) return 218;
    read_max_threads(ptx);
    *m = (void*)0x3;
    return 0;
}
CUresult cuModuleLoadData(void** m, const void* image) { return load_module(m, image); }
CUresult cuModuleLoadDataEx(void** m, const void* image, unsigned, int*, void**) { return load_module(m, image); }
CUresult cuModuleUnload(void*) { return 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    for (unsigned i = 0; i < emu_kernel_count; ++i)
        if (std::strcmp(emu_kernels[i].name, name) == 0) {
            *f = const_cast<EmuKernel*>(&emu_kernels[i]);
            return 0;
        }
    return 500;  // CUDA_ERROR_NOT_FOUND
}
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    const size_t page = page_size(), want = bytes ? bytes : 1;
    const size_t body = (want + page - 1) / page * page, len = body + page;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    char* base = static_cast<char*>(m);
    char* user;
    if (guard_before()) {
        mprotect(base, page, PROT_NONE);
        user = base + page;
    } else {
        mprotect(base + body, page, PROT_NONE);
        user = base + body - want;
    }
    std::memset(user, 0xFF, want);  // garbage, as real device memory: NaN as floats
    allocs()[(uintptr_t)user] = Alloc{base, len, want};
    *p = (CUdeviceptr)user;
    return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    auto it = allocs().find((uintptr_t)p);
    if (it == allocs().end()) return 1;  // CUDA_ERROR_INVALID_VALUE
    munmap(it->second.base, it->second.len);
    allocs().erase(it);
    return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { std::memset((void*)p, v, n); return 0; }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) { return cuMemsetD8_v2(p, v, n); }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) { std::memcpy((void*)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) { std::memcpy(d, (void*)s, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void*) { return cuMemcpyHtoD_v2(d, s, n); }
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void*) { return cuMemcpyDtoH_v2(d, s, n); }
CUresult cuGetErrorString(CUresult e, const char** s) {
    static char buf[64];
    std::snprintf(buf, sizeof buf, "fake libcuda error %d", e);
    *s = buf;
    return 0;
}
CUresult cuGetErrorName(CUresult e, const char** s) { return cuGetErrorString(e, s); }

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shmem, void*, void** params, void**) {
    const EmuKernel& k = *static_cast<const EmuKernel*>(f);
    const Running running(k.name);
    static const bool trace = std::getenv("LSOFTMAX_EMU_TRACE") != nullptr;
    if (trace) std::fprintf(stderr, "launch %s grid (%u,%u,%u) block %u\n", k.name, gx, gy, gz, bx);
    if (by != 1 || bz != 1 || shmem != 0) return 1;  // not used by the trainer
    // The launch limits of a real GPU (compute capability 8.0 and later).
    auto limit = max_threads().find(k.name);
    const unsigned max_block = limit == max_threads().end() ? 1024 : limit->second;
    if (bx == 0 || bx > max_block || gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535) {
        std::fprintf(stderr,
                     "fake libcuda: kernel %s launched with grid (%u, %u, %u) and %u threads per block; a GPU "
                     "takes 1 to %u threads (its PTX's .maxntid, else 1024), x up to 2^31 - 1 and y, z up to "
                     "65535 blocks\n",
                     k.name, gx, gy, gz, bx, max_block);
        return 1;  // CUDA_ERROR_INVALID_VALUE
    }
    const emu_dim3 grid{gx, gy, gz}, block{bx, 1, 1};
    const unsigned blocks = gx * gy * gz;
    if (!k.syncs) {
        gridDim = grid;
        blockDim = block;
        emu_self = nullptr;
        for (unsigned b = 0; b < blocks; ++b) {
            set_block(nth(b, blocks), grid);
            for (unsigned t = 0; t < bx; ++t) {
                threadIdx = emu_dim3{nth(t, bx), 0, 0};
                k.call(params);
            }
        }
        return 0;
    }
    // One fiber per thread of the block; rounds of resumptions are the barrier phases.
    struct Fiber {
        ucontext_t ctx;
        std::vector<char> stack;
        bool done;
    };
    static thread_local const EmuKernel* cur_kernel;
    static thread_local void** cur_params;
    static thread_local Fiber* cur_fiber;
    cur_kernel = &k;
    cur_params = params;
    std::vector<Fiber> fibers(bx);
    ucontext_t sched;
    gridDim = grid;
    blockDim = block;
    emu_sched = &sched;
    for (auto& fb : fibers) fb.stack.resize(256 * 1024);
    for (unsigned b = 0; b < blocks; ++b) {
        set_block(nth(b, blocks), grid);
        // Shared memory as a new block finds it: NaN, not what the previous block left (see
        // kernels.cpp).
        std::memset(__start_emu_shared, 0xFF, __stop_emu_shared - __start_emu_shared);
        for (unsigned t = 0; t < bx; ++t) {
            Fiber& fb = fibers[t];
            fb.done = false;
            getcontext(&fb.ctx);
            fb.ctx.uc_stack.ss_sp = fb.stack.data();
            fb.ctx.uc_stack.ss_size = fb.stack.size();
            fb.ctx.uc_link = &sched;
            makecontext(&fb.ctx, (void (*)())+[] {
                cur_kernel->call(cur_params);
                cur_fiber->done = true;
            }, 0);
        }
        for (unsigned live = bx; live > 0;) {
            live = 0;
            for (unsigned i = 0; i < bx; ++i) {
                const unsigned t = nth(i, bx);
                Fiber& fb = fibers[t];
                if (fb.done) continue;
                threadIdx = emu_dim3{t, 0, 0};
                emu_self = &fb.ctx;
                cur_fiber = &fb;
                swapcontext(&sched, &fb.ctx);
                if (!fb.done) ++live;
            }
        }
    }
    emu_self = nullptr;
    emu_sched = nullptr;
    return 0;
}
}
#pragma GCC visibility pop
