// cuda_fp16.h for the emulated CUDA device: the 16-bit float types live in cuda_emu.h.
#pragma once
#include "cuda_emu.h"
