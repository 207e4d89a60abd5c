#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ferry/checkpoint/runtime.h"

namespace ferry::checkpoint {
namespace {

// Answers every call and notes "<side>.<call>" in a shared log.
class Recorder final : public ContainerRuntime {
 public:
  Recorder(std::string side, std::vector<std::string>& log) : side_(std::move(side)), log_(log) {}
  Result<ContainerInfo> inspect(const std::string&) override { return note("inspect", ContainerInfo{}); }
  Result<bool> exists(const std::string&) override { return note("exists", true); }
  Result<std::optional<std::string>> imageId(const std::string&) override {
    return note("imageId", std::optional<std::string>{});
  }
  Status freeze(const ContainerInfo&) override { return note("freeze", okStatus()); }
  Status thaw(const ContainerInfo&) override { return note("thaw", okStatus()); }
  Result<bool> frozen(const ContainerInfo&) override { return note("frozen", true); }
  Result<std::uint64_t> memoryBytes(const ContainerInfo&) override {
    return note("memoryBytes", std::uint64_t{1});
  }
  Result<CheckpointStats> checkpoint(const std::string&, const CheckpointOptions&) override {
    return note("checkpoint", CheckpointStats{});
  }
  Result<RestoreStats> restore(const std::string&, const RestoreOptions&) override {
    return note("restore", RestoreStats{});
  }
  Status remove(const std::string&, std::chrono::seconds) override { return note("remove", okStatus()); }
  Status saveImage(const std::string&, const std::filesystem::path&) override {
    return note("saveImage", okStatus());
  }
  Result<std::string> loadImage(const std::filesystem::path&) override {
    return note("loadImage", std::string("x"));
  }

 private:
  template <typename T>
  T note(const char* call, T value) {
    log_.push_back(side_ + "." + call);
    return value;
  }
  std::string side_;
  std::vector<std::string>& log_;
};

struct RouteCase {
  std::string call;
  std::string side;  // which runtime must answer it
};

class MixedRuntimeTest : public ::testing::TestWithParam<RouteCase> {};

TEST_P(MixedRuntimeTest, EachCallGoesWhereItIsCheapest) {
  std::vector<std::string> log;
  auto rt =
      makeMixedPodmanRuntime(std::make_unique<Recorder>("cli", log), std::make_unique<Recorder>("api", log));
  const auto& c = GetParam();
  ContainerInfo info;
  if (c.call == "inspect") (void)rt->inspect("web");
  if (c.call == "exists") (void)rt->exists("web");
  if (c.call == "imageId") (void)rt->imageId("img");
  if (c.call == "freeze") (void)rt->freeze(info);
  if (c.call == "thaw") (void)rt->thaw(info);
  if (c.call == "frozen") (void)rt->frozen(info);
  if (c.call == "memoryBytes") (void)rt->memoryBytes(info);
  if (c.call == "checkpoint") (void)rt->checkpoint("web", CheckpointOptions{});
  if (c.call == "restore") (void)rt->restore("web", RestoreOptions{});
  if (c.call == "remove") (void)rt->remove("web", std::chrono::seconds(1));
  if (c.call == "saveImage") (void)rt->saveImage("img", "/tmp/x");
  if (c.call == "loadImage") (void)rt->loadImage("/tmp/x");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], c.side + "." + c.call);
}

INSTANTIATE_TEST_SUITE_P(Table, MixedRuntimeTest,
                         ::testing::Values(RouteCase{"inspect", "api"}, RouteCase{"exists", "api"},
                                           RouteCase{"imageId", "api"}, RouteCase{"restore", "cli"},
                                           RouteCase{"remove", "api"}, RouteCase{"checkpoint", "cli"},
                                           RouteCase{"saveImage", "cli"}, RouteCase{"loadImage", "cli"},
                                           RouteCase{"freeze", "cli"}, RouteCase{"thaw", "cli"},
                                           RouteCase{"frozen", "cli"}, RouteCase{"memoryBytes", "cli"}),
                         [](const ::testing::TestParamInfo<RouteCase>& i) { return i.param.call; });

TEST(PodmanApiPing, ANonexistentSocketSaysHowToStartTheService) {
  auto s = pingPodmanApi("/nonexistent/podman.sock", std::chrono::milliseconds(200));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("podman.socket"), std::string::npos) << s.error().message();
}

}  // namespace
}  // namespace ferry::checkpoint
