// Self-test of the fake driver's guard pages (fake_cuda.cpp), run by scripts/cuda_emu.sh:
//   guard_test N BYTES   runs sgd_step over N floats of three BYTES-byte device buffers.
// With BYTES = 4 N it must succeed; with one float less it must die at the guard page with a
// message naming the kernel (the script checks both).
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {
int cuInit(unsigned);
int cuMemAlloc_v2(unsigned long long* p, size_t bytes);
int cuMemFree_v2(unsigned long long p);
int cuModuleGetFunction(void** f, void* module, const char* name);
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shmem, void* stream, void** params, void** extra);
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: guard_test N BYTES\n");
        return 2;
    }
    long long n = std::atoll(argv[1]);
    size_t bytes = std::strtoull(argv[2], nullptr, 10);
    void* f = nullptr;
    unsigned long long w = 0, g = 0, b = 0;
    if (cuInit(0) || cuModuleGetFunction(&f, nullptr, "sgd_step") || cuMemAlloc_v2(&w, bytes) ||
        cuMemAlloc_v2(&g, bytes) || cuMemAlloc_v2(&b, bytes)) {
        std::fprintf(stderr, "guard_test: driver set-up failed\n");
        return 2;
    }
    float lr = 0.1f, momentum = 0.9f, wd = 0.f;
    int first = 1;
    void* params[] = {&w, &g, &b, &n, &lr, &momentum, &wd, &first};
    if (cuLaunchKernel(f, 4, 1, 1, 64, 1, 1, 0, nullptr, params, nullptr)) {
        std::fprintf(stderr, "guard_test: launch failed\n");
        return 2;
    }
    cuMemFree_v2(w);
    cuMemFree_v2(g);
    cuMemFree_v2(b);
    std::printf("guard_test: sgd_step over %lld floats of %zu-byte buffers ran\n", n, bytes);
    return 0;
}
