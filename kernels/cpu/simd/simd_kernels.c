/* SIMD kernels: compiled once per ISA (see CMakeLists.txt). */
