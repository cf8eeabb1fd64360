// The table of the emulated kernels (kernels.cpp) that the fake driver (fake_cuda.cpp) launches.
#pragma once

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
