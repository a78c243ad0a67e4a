// runtime.h — what the stand-in driver (driver.cpp) needs from the execution engine
// (runtime.cpp): the table of host-compiled kernels and a synchronous grid launch.
#pragma once
#include <string>

#include "cuda_emu.h"

namespace emu {

// The host-compiled kernel called `name`, or null.
const KernelInfo* find_kernel(const char* name);

// One kernel launch as cuLaunchKernel describes it.
struct LaunchSpec {
    const KernelInfo* kernel;
    dim3 grid;
    dim3 block;
    unsigned smem_bytes;  // dynamic shared memory
    void** params;        // one pointer per kernel parameter
};

// Runs every block of the grid to completion: launches one at a time per process; blocks in
// parallel on worker threads (fiber builds; TREEPO_EMU_WORKERS, default the number of CPUs) or
// one after another (TREEPO_EMU_THREADS builds). The reported error is the one of the first
// failing block in grid order among those that ran. Returns "" on success, else what went wrong, naming
// the kernel, the block and the source line (a deadlock, a barrier or warp collective that not
// every participant reached, a mask that names an exited lane, a dynamic shared memory overrun,
// __trap()).
std::string run_grid(const LaunchSpec& spec);

// "fibers" (default) or "threads" (builds with TREEPO_EMU_THREADS: one OS thread per CUDA thread).
const char* schedule_name();

}  // namespace emu
