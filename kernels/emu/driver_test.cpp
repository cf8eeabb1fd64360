// Self-test of the fake driver (fake_cuda.cpp), run by scripts/cuda_emu.sh each time it builds it:
//   driver_test guard N BYTES   runs sgd_step over N floats of three BYTES-byte device buffers.
//                               With BYTES = 4 N it must succeed; with one float less it must die
//                               at the guard page with a message naming the kernel (the script
//                               checks both).
//   driver_test limits          loads a PTX declaring sgd_step with `.maxntid 64, 1, 1` and checks
//                               that launches within a GPU's limits run and the others fail.
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {
int cuInit(unsigned);
int cuMemAlloc_v2(unsigned long long* p, size_t bytes);
int cuMemFree_v2(unsigned long long p);
int cuModuleLoadData(void** module, const void* image);
int cuModuleGetFunction(void** f, void* module, const char* name);
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

}  // namespace

int main(int argc, char** argv) {
    if (cuInit(0)) return 2;
    if (argc == 4 && std::strcmp(argv[1], "guard") == 0)
        return guard(std::atoll(argv[2]), std::strtoull(argv[3], nullptr, 10));
    if (argc == 2 && std::strcmp(argv[1], "limits") == 0) return limits();
    std::fprintf(stderr, "usage: driver_test guard N BYTES | driver_test limits\n");
    return 2;
}
