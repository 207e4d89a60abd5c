# ferry_sync_bench: the mirroring engine against rsync, in-process (issue 4).
# Included from bench/CMakeLists.txt:  include(${CMAKE_CURRENT_SOURCE_DIR}/sync_bench.cmake)
# Run (root, needs ~4 GB free under --dir):
#   build/bench/ferry_sync_bench --dir /tmp/ferry-sync-bench --repeat 3
add_executable(ferry_sync_bench ${CMAKE_CURRENT_LIST_DIR}/sync_bench.cc)
target_link_libraries(ferry_sync_bench PRIVATE ferry_sync ferry_base ferry_warnings)
