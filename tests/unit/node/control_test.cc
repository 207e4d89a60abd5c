#include "ferry/node/control.h"

#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace ferry::node {
namespace {

using namespace std::chrono_literals;

std::filesystem::path socketPath(const std::string& tag) {
  return std::filesystem::temp_directory_path() /
         ("ferry-control-" + tag + "-" + std::to_string(::getpid()) + ".sock");
}

TEST(Control, RequestAndReply) {
  auto path = socketPath("rr");
  auto server = ControlServer::start(path, [](const nlohmann::json& req, const ControlEmit&) {
    return nlohmann::json{{"ok", true}, {"echo", req.at("cmd")}};
  });
  ASSERT_TRUE(server.ok()) << server.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (int i = 0; i < 3; ++i) {
    auto reply = controlRequest(path, {{"cmd", "status"}}, 2s);
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    EXPECT_EQ(reply->at("echo"), "status");
  }
}

TEST(Control, HandlerExceptionBecomesError) {
  auto path = socketPath("ex");
  auto server = ControlServer::start(path, [](const nlohmann::json& req, const ControlEmit&) {
    return nlohmann::json{{"value", req.at("missing")}};  // throws: no such key
  });
  ASSERT_TRUE(server.ok());
  auto reply = controlRequest(path, {{"cmd", "x"}}, 2s);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->at("ok"), false);
  EXPECT_NE(reply->at("error").get<std::string>().find("bad control request"), std::string::npos);
}

TEST(Control, NoDaemonIsAClearError) {
  auto reply = controlRequest(socketPath("none"), {{"cmd", "status"}}, 1s);
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.error().what.find("cannot reach the node daemon"), std::string::npos);
  EXPECT_NE(reply.error().hint.find("ferry node run"), std::string::npos);
}

TEST(Control, SecondServerOnTheSameSocketIsRefused) {
  auto path = socketPath("dup");
  auto first =
      ControlServer::start(path, [](const nlohmann::json&, const ControlEmit&) { return nlohmann::json{}; });
  ASSERT_TRUE(first.ok());
  auto second =
      ControlServer::start(path, [](const nlohmann::json&, const ControlEmit&) { return nlohmann::json{}; });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().what.find("already serving"), std::string::npos);
}

TEST(Control, StaleSocketFileIsReplaced) {
  auto path = socketPath("stale");
  {
    auto s = ControlServer::start(path,
                                  [](const nlohmann::json&, const ControlEmit&) { return nlohmann::json{}; });
  }
  // Simulate a crash that left the file behind.
  { std::ofstream(path.string()) << ""; }
  auto server = ControlServer::start(path, [](const nlohmann::json&, const ControlEmit&) {
    return nlohmann::json{{"ok", true}};
  });
  ASSERT_TRUE(server.ok()) << server.error().message();
  auto reply = controlRequest(path, {{"cmd", "status"}}, 2s);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->at("ok"), true);
}

TEST(Control, EventsComeBeforeTheAnswer) {
  auto path = socketPath("ev");
  auto server = ControlServer::start(path, [](const nlohmann::json&, const ControlEmit& emit) {
    for (int i = 0; i < 3; ++i) emit({{"event", "progress"}, {"n", i}});
    return nlohmann::json{{"ok", true}, {"done", true}};
  });
  ASSERT_TRUE(server.ok());
  std::vector<int> seen;
  auto reply =
      controlRequest(path, {{"cmd", "x"}}, 2s, [&](const nlohmann::json& e) { seen.push_back(e.at("n")); });
  ASSERT_TRUE(reply.ok()) << reply.error().message();
  EXPECT_EQ(reply->at("done"), true);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
}

// A long request (a migration) must not block a short one (status).
TEST(Control, ALongRequestDoesNotBlockAnother) {
  auto path = socketPath("conc");
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto server = ControlServer::start(path, [&](const nlohmann::json& req, const ControlEmit&) {
    if (req.at("cmd") == "slow") {
      std::unique_lock lock(mu);
      cv.wait_for(lock, 10s, [&] { return release; });
    }
    return nlohmann::json{{"ok", true}, {"cmd", req.at("cmd")}};
  });
  ASSERT_TRUE(server.ok());
  std::thread slow([&] {
    auto r = controlRequest(path, {{"cmd", "slow"}}, 15s);
    EXPECT_TRUE(r.ok());
  });
  auto quick = controlRequest(path, {{"cmd", "status"}}, 5s);
  ASSERT_TRUE(quick.ok()) << quick.error().message();
  EXPECT_EQ(quick->at("cmd"), "status");
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  slow.join();
}

}  // namespace
}  // namespace ferry::node
