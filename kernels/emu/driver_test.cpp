// Self-test of the fake driver (fake_cuda.cpp), run by scripts/cuda_emu.sh each time it builds it:
//   driver_test guard N BYTES   runs sgd_step over N floats of three BYTES-byte device buffers.
//                               With BYTES = 4 N it must succeed; with one float less it must die
//                               at the guard page with a message naming the kernel (the script
//                               checks both).
//   driver_test limits          loads a PTX declaring sgd_step with `.maxntid 64, 1, 1` and checks
//                               that launches within a GPU's limits run and the others fail.
//   driver_test mutants         against the driver built with mutants.cpp's broken kernels: runs
//                               the control and the kernels whose bug shows as a wrong or NaN
//                               result, and checks each result (FAKE_CUDA_ORDER decides which
//                               are expected right).
//   driver_test dies KERNEL     against the same driver: launches KERNEL, which must stop the
//                               process (abort, or die at a guard page; the script checks the
//                               exit status and the message).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {
int cuInit(unsigned);
int cuMemAlloc_v2(unsigned long long* p, size_t bytes);
int cuMemFree_v2(unsigned long long p);
int cuModuleLoadData(void** module, const void* image);
int cuModuleGetFunction(void** f, void* module, const char* name);
int cuMemcpyHtoD_v2(unsigned long long d, const void* s, size_t n);
int cuMemcpyDtoH_v2(void* d, unsigned long long s, size_t n);
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shmem, void* stream, void** params, void** extra);
}

namespace {

// sgd_step's arguments: three buffers, n, lr, momentum, weight decay, first.
struct SgdArgs {
    unsigned long long w = 0, g = 0, b = 0;
    long long n = 0;
    float lr = 0.1f, momentum = 0.9f, wd = 0.f;
    int first = 1;
    void* params[8] = {&w, &g, &b, &n, &lr, &momentum, &wd, &first};
};

int guard(long long n, size_t bytes) {
    void* f = nullptr;
    SgdArgs a;
    a.n = n;
    if (cuModuleGetFunction(&f, nullptr, "sgd_step") || cuMemAlloc_v2(&a.w, bytes) || cuMemAlloc_v2(&a.g, bytes) ||
        cuMemAlloc_v2(&a.b, bytes)) {
        std::fprintf(stderr, "driver_test: set-up failed\n");
        return 2;
    }
    if (cuLaunchKernel(f, 4, 1, 1, 64, 1, 1, 0, nullptr, a.params, nullptr)) {
        std::fprintf(stderr, "driver_test: launch failed\n");
        return 2;
    }
    cuMemFree_v2(a.w);
    cuMemFree_v2(a.g);
    cuMemFree_v2(a.b);
    std::printf("driver_test: sgd_step over %lld floats of %zu-byte buffers ran\n", n, bytes);
    return 0;
}

int limits() {
    static const char ptx[] =
        ".version 9.0\n.target sm_80\n.address_size 64\n\n"
        ".visible .entry sgd_step(\n\t.param .u64 sgd_step_param_0\n)\n.maxntid 64, 1, 1\n{\n\tret;\n}\n";
    void* module = nullptr;
    void* f = nullptr;
    if (cuModuleLoadData(&module, ptx) || cuModuleGetFunction(&f, module, "sgd_step")) {
        std::fprintf(stderr, "driver_test: set-up failed\n");
        return 2;
    }
    SgdArgs a;  // n = 0: no memory is touched
    struct Case {
        unsigned gx, gy, gz, bx;
        bool ok;
    } cases[] = {
        {1, 1, 1, 64, true},     {1, 65535, 1, 32, true},  {1, 1, 65535, 32, true}, {1, 1, 1, 65, false},
        {1, 1, 1, 0, false},     {1, 65536, 1, 32, false}, {1, 1, 65536, 32, false}, {0, 1, 1, 32, false},
    };
    int failures = 0;
    for (const Case& c : cases) {
        bool ok = cuLaunchKernel(f, c.gx, c.gy, c.gz, c.bx, 1, 1, 0, nullptr, a.params, nullptr) == 0;
        if (ok != c.ok) {
            std::fprintf(stderr, "driver_test: grid (%u, %u, %u) x %u threads %s, expected %s\n", c.gx, c.gy, c.gz,
                         c.bx, ok ? "ran" : "failed", c.ok ? "to run" : "to fail");
            ++failures;
        }
    }
    if (failures) return 1;
    std::printf("driver_test: launch limits as on a GPU (.maxntid 64 read from the PTX)\n");
    return 0;
}

// Runs mutants.cpp's KERNEL on one block of 64 threads over n values 1, 2, ..., n (sum n (n +
// 1) / 2), the output buffer fresh from cuMemAlloc. Returns the first output float, or
// fails the process if the set-up or launch fails.
float run_mutant(const char* kernel, int n) {
    const int threads = 64;
    void* f = nullptr;
    unsigned long long x = 0, out = 0;
    float host[threads];
    for (int i = 0; i < threads; ++i) host[i] = float(i + 1);
    if (cuModuleGetFunction(&f, nullptr, kernel) || cuMemAlloc_v2(&x, sizeof host) ||
        cuMemAlloc_v2(&out, sizeof host) || cuMemcpyHtoD_v2(x, host, sizeof host)) {
        std::fprintf(stderr, "driver_test: set-up for %s failed (is this the mutants driver?)\n", kernel);
        std::exit(2);
    }
    void* params[3] = {&x, &out, &n};
    if (cuLaunchKernel(f, 1, 1, 1, threads, 1, 1, 0, nullptr, params, nullptr)) {
        std::fprintf(stderr, "driver_test: launching %s failed\n", kernel);
        std::exit(2);
    }
    float result = 0.f;
    cuMemcpyDtoH_v2(&result, out, sizeof result);
    cuMemFree_v2(x);
    cuMemFree_v2(out);
    return result;
}

int mutants() {
    const char* order = std::getenv("FAKE_CUDA_ORDER");
    const bool reverse = order && std::strcmp(order, "reverse") == 0;
    struct Case {
        const char* kernel;
        int n;
        bool right;  // expected: the exact sum (else a wrong or NaN result)
        const char* why;
    } cases[] = {
        {"sum_ok", 64, true, "the control"},
        {"sum_no_barrier", 64, !reverse, "a missing barrier shows in reverse order only"},
        {"sum_unpadded", 48, false, "unwritten shared memory is NaN"},
        {"accumulate_unzeroed", 1, false, "fresh device memory is NaN"},
    };
    int failures = 0;
    for (const Case& c : cases) {
        const float got = run_mutant(c.kernel, c.n), want = float(c.n) * float(c.n + 1) / 2.f;
        const bool right = got == want;
        std::printf("driver_test: %-20s gave %g (the sum is %g): %s, %s (%s)\n", c.kernel, got, want,
                    right ? "right" : (std::isnan(got) ? "NaN" : "wrong"),
                    right == c.right ? "as expected" : "NOT as expected", c.why);
        failures += right != c.right;
    }
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (cuInit(0)) return 2;
    if (argc == 4 && std::strcmp(argv[1], "guard") == 0)
        return guard(std::atoll(argv[2]), std::strtoull(argv[3], nullptr, 10));
    if (argc == 2 && std::strcmp(argv[1], "limits") == 0) return limits();
    if (argc == 2 && std::strcmp(argv[1], "mutants") == 0) return mutants();
    if (argc == 3 && std::strcmp(argv[1], "dies") == 0) {
        std::printf("driver_test: %s gave %g and did not abort\n", argv[2], run_mutant(argv[2], 64));
        return 1;
    }
    std::fprintf(stderr, "usage: driver_test guard N BYTES | limits | mutants | dies KERNEL\n");
    return 2;
}
