# ferry_sync_bench: the mirroring engine against rsync, in-process (issue 4).
# Included from bench/CMakeLists.txt:  include(${CMAKE_CURRENT_SOURCE_DIR}/sync_bench.cmake)
# Run (root, needs ~4 GB free under --dir):
#   build/bench/ferry_sync_bench --dir /tmp/ferry-sync-bench --repeat 3
add_executable(ferry_sync_bench ${CMAKE_CURRENT_LIST_DIR}/sync_bench.cc)
target_link_libraries(ferry_sync_bench PRIVATE ferry_sync ferry_base ferry_warnings)
# --overhead reads the kernel's per-program run time of the write tracker (BPF_ENABLE_STATS).
pkg_check_modules(FERRY_BENCH_LIBBPF IMPORTED_TARGET libbpf)
if(FERRY_BENCH_LIBBPF_FOUND)
  target_link_libraries(ferry_sync_bench PRIVATE PkgConfig::FERRY_BENCH_LIBBPF)
  target_compile_definitions(ferry_sync_bench PRIVATE FERRY_BENCH_BPF_STATS=1)
endif()
