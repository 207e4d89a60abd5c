// Regression runner for a fuzz target built without libFuzzer: replays every
// seed in the given corpus directories, plus deterministic mutations of each
// (every single-bit flip of the first 1 KiB, every 8-byte truncation, and 256
// seeded random byte edits). A crash or sanitizer report fails the test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void run(const std::string& input) {
  // A fresh heap copy, so ASan sees reads past the end.
  std::vector<uint8_t> copy(input.begin(), input.end());
  (void)LLVMFuzzerTestOneInput(copy.data(), copy.size());
}

size_t replay(const std::string& seed, uint64_t seedIndex) {
  size_t runs = 0;
  run(seed);
  ++runs;
  for (size_t cut = 0; cut < seed.size(); cut += 8) {
    run(seed.substr(0, cut));
    ++runs;
  }
  const size_t bits = std::min<size_t>(seed.size(), 1024) * 8;
  for (size_t bit = 0; bit < bits; ++bit) {
    std::string flipped = seed;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    run(flipped);
    ++runs;
  }
  std::mt19937_64 rng(0x5eed0000 + seedIndex);
  for (int i = 0; i < 256 && !seed.empty(); ++i) {
    std::string edited = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) edited[rng() % edited.size()] = static_cast<char>(rng());
    run(edited);
    ++runs;
  }
  return runs;
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    fs::path p(argv[i]);
    if (fs::is_directory(p)) {
      for (const auto& entry : fs::directory_iterator(p)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(
        stderr,
        "%s: no seed inputs found — each fuzz target needs a seed corpus (tests/fuzz/corpus/<target>/)\n",
        argc > 0 ? argv[0] : "replay");
    return 1;
  }
  size_t runs = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    std::ifstream in(files[i], std::ios::binary);
    std::string seed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runs += replay(seed, i);
  }
  std::printf("%zu seeds, %zu inputs replayed, no crash\n", files.size(), runs);
  return 0;
}
