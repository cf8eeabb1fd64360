// The table of the emulated kernels (kernels.cpp; mutants.cpp for the driver's self-test) that
// the fake driver (fake_cuda.cpp) launches.
#pragma once
#include <cstddef>
#include <type_traits>
#include <utility>

struct EmuKernel {
    const char* name;
    bool syncs;                 // uses __syncthreads: run the block's threads as fibers (see emu.h)
    void (*call)(void** args);  // runs the kernel for the current thread, args as cuLaunchKernel's
};

extern const EmuKernel emu_kernels[];
extern const unsigned emu_kernel_count;

// The kernels' `__shared__` arrays: scripts/cuda_emu.sh renames kernels.o's .bss, which holds
// them and nothing else, to this section; the linker provides its bounds.
extern "C" char __start_emu_shared[];
extern "C" char __stop_emu_shared[];

// Calls f with a launch's arguments: p[i] points to the value of f's i-th parameter.
template <class... A, std::size_t... I>
void emu_call(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}
template <class... A>
void emu_call(void (*f)(A...), void** p) {
    emu_call(f, p, std::index_sequence_for<A...>{});
}
template <auto F>
void emu_invoke(void** p) {
    emu_call(F, p);
}

// A table entry: kernel NAME (a function in scope), whether it synchronises.
#define EMU_KERNEL(name, syncs) EmuKernel{#name, syncs, &emu_invoke<&name>}
