// The Podman API runtime against a fake API service on a unix socket: the requests it
// sends (method, endpoint, parameters, bodies) and how it reads every answer, including
// errors, misbehaving services and deadlines. Answers are shaped like Podman 5.4.2's.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "fake_os.h"
#include "fake_podman_api.h"
#include "ferry/checkpoint/runtime.h"
#include "tar_builder.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::FakePodmanApi;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::pattern;
using testing::podmanError;
using testing::slurp;
using testing::spit;
using namespace std::chrono_literals;

constexpr const char* kId = "3f1c7e0e5d0c4f6b9a8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a49382";

// A trimmed `GET /v5.0.0/libpod/containers/web/json` answer: one object, no list.
const std::string kInspect = std::string(R"({"Id":")") + kId + R"(","Created":"2025-05-01T10:00:00Z",
  "Name":"web","Image":"5d2b0f3c1e4a","ImageName":"localhost/ferry-web:1",
  "State":{"OciVersion":"1.2.0","Status":"running","Running":true,"Paused":false,"Pid":4242,
           "CgroupPath":"/libpod_parent/libpod-3f1c7e0e5d0c"},
  "StaticDir":"/var/lib/containers/storage/overlay-containers/3f1c/userdata",
  "Mounts":[{"Type":"bind","Source":"/srv/ferry/ref","Destination":"/srv/data"}],
  "HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}},
  "NetworkSettings":{"Networks":{"podman":{"IPAddress":"10.88.0.5"}}}})";

const std::string kNoSuchContainer =
    podmanError(404, "no such container", "no container with name or ID \"web\" found: no such container");

FakeResponse answer(int status, std::string body, std::string type = "application/json") {
  FakeResponse r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(type);
  return r;
}

std::string outcome(const Error& e) {
  return "error:" + e.message();
}

// ---- one table for the small calls ------------------------------------------------

struct CallCase {
  std::string name;
  std::function<std::string(ContainerRuntime&)> call;  // "ok:..." or "error:..."
  FakeResponse response;
  std::string method;
  std::string target_prefix;  // raw target up to the query
  std::vector<std::string> params;
  std::string expect;  // a part of call's text
};

std::string inspectWeb(ContainerRuntime& rt) {
  auto c = rt.inspect("web");
  if (!c) return outcome(c.error());
  return "ok:" + c->name + " " + c->id.substr(0, 12) + " " + c->cgroup_path +
         " pid=" + std::to_string(c->pid) + " ports=" + std::to_string(c->ports.size()) +
         " ip=" + c->addresses["podman"];
}

std::string existsWeb(ContainerRuntime& rt) {
  auto e = rt.exists("web");
  if (!e) return outcome(e.error());
  return *e ? "ok:true" : "ok:false";
}

std::string imageOf(ContainerRuntime& rt) {
  auto id = rt.imageId("localhost/ferry-web:1");
  if (!id) return outcome(id.error());
  return id->has_value() ? "ok:" + **id : "ok:absent";
}

std::string removeWeb(ContainerRuntime& rt) {
  auto s = rt.remove("web", 7s);
  return s ? "ok" : outcome(s.error());
}

class ApiCalls : public ::testing::TestWithParam<CallCase> {};

TEST_P(ApiCalls, SendsTheRightRequestAndReadsTheAnswer) {
  const auto& c = GetParam();
  FakePodmanApi api([&](const FakeRequest&) { return c.response; });
  auto rt = makePodmanApiRuntime(api.socket());
  std::string got = c.call(*rt);
  EXPECT_NE(got.find(c.expect), std::string::npos) << c.name << ": " << got;
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U) << c.name;
  EXPECT_EQ(seen[0].method, c.method) << c.name;
  EXPECT_EQ(seen[0].target.substr(0, seen[0].target.find('?')), c.target_prefix) << c.name;
  for (const auto& p : c.params)
    EXPECT_TRUE(seen[0].hasParam(p)) << c.name << ": no " << p << " in " << seen[0].query;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ApiCalls,
    ::testing::Values(
        CallCase{"inspect_ok",
                 inspectWeb,
                 answer(200, kInspect),
                 "GET",
                 "/v5.0.0/libpod/containers/web/json",
                 {},
                 "ok:web 3f1c7e0e5d0c /libpod_parent/libpod-3f1c7e0e5d0c pid=4242 ports=1 ip=10.88.0.5"},
        CallCase{"inspect_missing",
                 inspectWeb,
                 answer(404, kNoSuchContainer),
                 "GET",
                 "/v5.0.0/libpod/containers/web/json",
                 {},
                 "error:no container named 'web' on this host — check the name with 'podman ps -a'"},
        CallCase{"inspect_no_route",
                 inspectWeb,
                 answer(404, "404 page not found\n", "text/plain"),
                 "GET",
                 "/v5.0.0/libpod/containers/web/json",
                 {},
                 "error:podman container inspect web failed (HTTP 404): 404 page not found — the Podman API "
                 "service at"},
        CallCase{
            "inspect_server_error",
            inspectWeb,
            answer(500, podmanError(500, "database is locked", "reading container web: database is locked")),
            "GET",
            "/v5.0.0/libpod/containers/web/json",
            {},
            "error:podman container inspect web failed (HTTP 500): reading container web: database is "
            "locked"},
        CallCase{"inspect_garbage",
                 inspectWeb,
                 answer(200, "<html>"),
                 "GET",
                 "/v5.0.0/libpod/containers/web/json",
                 {},
                 "error:cannot parse podman inspect output"},
        CallCase{"exists_yes",
                 existsWeb,
                 answer(204, ""),
                 "GET",
                 "/v5.0.0/libpod/containers/web/exists",
                 {},
                 "ok:true"},
        CallCase{"exists_no",
                 existsWeb,
                 answer(404, kNoSuchContainer),
                 "GET",
                 "/v5.0.0/libpod/containers/web/exists",
                 {},
                 "ok:false"},
        CallCase{"exists_no_route",
                 existsWeb,
                 answer(404, "404 page not found\n", "text/plain"),
                 "GET",
                 "/v5.0.0/libpod/containers/web/exists",
                 {},
                 "error:podman container exists web failed (HTTP 404)"},
        CallCase{"image_present",
                 imageOf,
                 answer(200, R"({"Id":"5d2b0f3c1e4a9b8c","RepoTags":["localhost/ferry-web:1"]})"),
                 "GET",
                 "/v5.0.0/libpod/images/localhost%2Fferry-web%3A1/json",
                 {},
                 "ok:5d2b0f3c1e4a9b8c"},
        CallCase{
            "image_absent",
            imageOf,
            answer(404,
                   podmanError(404, "image not known",
                               "failed to find image localhost/ferry-web:1: localhost/ferry-web:1: image "
                               "not known")),
            "GET",
            "/v5.0.0/libpod/images/localhost%2Fferry-web%3A1/json",
            {},
            "ok:absent"},
        CallCase{
            "image_lookup_fails",
            imageOf,
            answer(404, podmanError(404, "invalid reference format",
                                    "failed to find image localhost/ferry-web:1: invalid reference format")),
            "GET",
            "/v5.0.0/libpod/images/localhost%2Fferry-web%3A1/json",
            {},
            "error:podman image inspect localhost/ferry-web:1 failed (HTTP 404): failed to find image"},
        CallCase{"image_without_id",
                 imageOf,
                 answer(200, "{}"),
                 "GET",
                 "/v5.0.0/libpod/images/localhost%2Fferry-web%3A1/json",
                 {},
                 "error:podman image inspect localhost/ferry-web:1 printed no ID"},
        CallCase{"remove_ok",
                 removeWeb,
                 answer(200, std::string(R"([{"Id":")") + kId + R"("}])"),
                 "DELETE",
                 "/v5.0.0/libpod/containers/web",
                 {"force=true", "ignore=true", "timeout=7"},
                 "ok"},
        CallCase{"remove_absent",
                 removeWeb,
                 answer(404, kNoSuchContainer),
                 "DELETE",
                 "/v5.0.0/libpod/containers/web",
                 {"force=true"},
                 "ok"},
        CallCase{
            "remove_fails",
            removeWeb,
            answer(500, podmanError(500, "container state improper",
                                    "cannot remove container web as it is paused: container state improper")),
            "DELETE",
            "/v5.0.0/libpod/containers/web",
            {},
            "error:podman container rm web failed (HTTP 500): cannot remove container web as it is paused"}),
    [](const auto& tp) { return tp.param.name; });

// ---- checkpoint --------------------------------------------------------------------

CriuDumpStats dumpStats() {
  CriuDumpStats s;
  s.freezing_time = 1500;
  s.frozen_time = 456789;
  s.memdump_time = 20000;
  s.memwrite_time = 300000;
  s.pages_scanned = 70000;
  s.pages_written = 65000;
  return s;
}

// Shaped like Podman's export: metadata, CRIU's stats-dump, the image directory.
std::string exportTar(std::size_t pages_bytes) {
  using testing::tarMember;
  return tarMember("config.dump", R"({"id":"3f1c"})") + tarMember("spec.dump", std::string(4000, 's')) +
         tarMember("network.status", "[]") + tarMember("stats-dump", testing::criuStatsImage(dumpStats())) +
         tarMember("checkpoint/", "", '5') + tarMember("checkpoint/pages-1.img", pattern(pages_bytes, 9)) +
         tarMember("checkpoint/inventory.img", "inv") + testing::tarEnd();
}

std::uint64_t sizeOf(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

TEST(ApiCheckpoint, StreamsTheExportIntoTheArchiveAsItArrives) {
  const std::string tar = exportTar(std::size_t{6} << 20);
  std::atomic<bool> grew_midway{false};
  fs::path archive;
  FakePodmanApi api([&](const FakeRequest&) {
    FakeResponse r = answer(200, tar, "application/octet; charset=us-ascii");
    r.chunked = true;  // what Go's net/http does with io.Copy and no length
    r.on_sent = [&, checked = false](std::size_t sent) mutable {
      if (checked || sent < tar.size() / 2) return;
      checked = true;
      // Half sent: the client must already have written a good part of it to disk.
      auto until = std::chrono::steady_clock::now() + 5s;
      while (sizeOf(archive) < (std::uint64_t{1} << 20) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(1ms);
      grew_midway = sizeOf(archive) >= (std::uint64_t{1} << 20);
    };
    return r;
  });
  archive = api.dir() / "web.tar";
  auto rt = makePodmanApiRuntime(api.socket());
  CheckpointOptions o;
  o.archive = archive;
  auto st = rt->checkpoint("web", o);
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_TRUE(grew_midway.load());
  EXPECT_TRUE(slurp(archive) == tar);
  EXPECT_DOUBLE_EQ(st->criu_frozen_ms, 456.789);
  EXPECT_DOUBLE_EQ(st->criu_freezing_ms, 1.5);
  EXPECT_DOUBLE_EQ(st->criu_memdump_ms, 20.0);
  EXPECT_DOUBLE_EQ(st->criu_memwrite_ms, 300.0);
  EXPECT_EQ(st->pages_scanned, 70000U);
  EXPECT_EQ(st->pages_written, 65000U);
  EXPECT_GT(st->podman_ms, 0.0);
  EXPECT_EQ(st->runtime_ms, 0.0);  // Podman's API does not say when exporting
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/v5.0.0/libpod/containers/web/checkpoint");
  for (const char* p :
       {"export=true", "keep=true", "tcpEstablished=true", "fileLocks=true", "printStats=false"})
    EXPECT_TRUE(seen[0].hasParam(p)) << p << " in " << seen[0].query;
}

TEST(ApiCheckpoint, WithoutExportReadsPodmansReport) {
  FakePodmanApi api([](const FakeRequest&) {
    return answer(200, R"({"Id":"3f1c","runtime_checkpoint_duration":250000,
      "criu_statistics":{"freezing_time":1000,"frozen_time":200000,"memdump_time":3000,
                         "memwrite_time":4000,"pages_scanned":10,"pages_written":8}})");
  });
  auto rt = makePodmanApiRuntime(api.socket());
  CheckpointOptions o;
  o.keep = false;
  o.tcp_established = false;
  o.file_locks = false;
  auto st = rt->checkpoint("web", o);
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_DOUBLE_EQ(st->runtime_ms, 250.0);
  EXPECT_DOUBLE_EQ(st->criu_frozen_ms, 200.0);
  EXPECT_EQ(st->pages_written, 8U);
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  for (const char* p : {"keep=false", "tcpEstablished=false", "fileLocks=false", "printStats=true"})
    EXPECT_TRUE(seen[0].hasParam(p)) << p << " in " << seen[0].query;
  EXPECT_EQ(seen[0].query.find("export"), std::string::npos);
}

TEST(ApiCheckpoint, AFailureIsDiagnosedFromCriusLog) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  const fs::path work = api.dir() / "userdata";
  fs::create_directories(work);
  spit(work / "dump.log",
       "(00.010) Dumping tasks\n(00.020) Error (criu/sockets.c:571): Can't get 1:16 opt\n"
       "(00.021) Error (criu/cr-dump.c:2112): Dumping FAILED.\n");
  // What libpod's ExecCmdWithStdStreams returns: the runc command line, not its stderr.
  const std::string message = "`/usr/sbin/runc checkpoint --image-path " + work.string() +
                              "/checkpoint --work-path " + work.string() +
                              " --tcp-established --file-locks 3f1c` failed: exit status 1";
  FakePodmanApi failing(
      [&](const FakeRequest&) { return answer(500, podmanError(500, "exit status 1", message)); });
  auto rt = makePodmanApiRuntime(failing.socket());
  CheckpointOptions o;
  o.archive = failing.dir() / "web.tar";
  auto st = rt->checkpoint("web", o);
  ASSERT_FALSE(st.ok());
  const auto& e = st.error();
  EXPECT_NE(e.what.find("checkpoint of web failed (HTTP 500): `/usr/sbin/runc checkpoint"), std::string::npos)
      << e.what;
  EXPECT_NE(e.what.find("CRIU: (00.021) Error (criu/cr-dump.c:2112): Dumping FAILED."), std::string::npos)
      << e.what;
  EXPECT_NE(e.hint.find("kernels ≥ 6.16"), std::string::npos) << e.hint;
  EXPECT_FALSE(fs::exists(o.archive));
}

TEST(ApiCheckpoint, AFailureWithoutALogKeepsPodmansWords) {
  FakePodmanApi api([](const FakeRequest&) {
    return answer(500, podmanError(500, "container state improper",
                                   "\"web\" is not running, cannot checkpoint: container state improper"));
  });
  auto rt = makePodmanApiRuntime(api.socket());
  auto st = rt->checkpoint("web", CheckpointOptions{.archive = api.dir() / "web.tar"});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().what,
            "checkpoint of web failed (HTTP 500): \"web\" is not running, cannot checkpoint: container state "
            "improper");
  EXPECT_EQ(st.error().hint, "");
}

TEST(ApiCheckpoint, AnExportCutShortIsAnError) {
  FakePodmanApi api([](const FakeRequest&) {
    FakeResponse r;
    r.raw =
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet\r\nTransfer-Encoding: "
        "chunked\r\n\r\n4\r\nabcd\r\n";
    return r;
  });
  auto rt = makePodmanApiRuntime(api.socket());
  auto st = rt->checkpoint("web", CheckpointOptions{.archive = api.dir() / "web.tar"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().what.find("broke off POST /v5.0.0/libpod/containers/web/checkpoint"),
            std::string::npos)
      << st.error().what;
  EXPECT_NE(st.error().hint.find("journalctl -u podman.service"), std::string::npos);
  EXPECT_FALSE(fs::exists(api.dir() / "web.tar"));  // a partial archive is no archive

  // One that was there before is not ferry's to remove.
  spit(api.dir() / "old.tar", "old");
  st = rt->checkpoint("web", CheckpointOptions{.archive = api.dir() / "old.tar"});
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(fs::exists(api.dir() / "old.tar"));
}

// ---- restore -----------------------------------------------------------------------

TEST(ApiRestore, ImportUploadsTheArchive) {
  const std::string archive_bytes = pattern(std::size_t{3} << 20, 5);
  std::atomic<bool> same{false};
  FakePodmanApi api([&](const FakeRequest& q) {
    same = q.body == archive_bytes;
    return answer(200, R"({"Id":"3f1c","runtime_restore_duration":300000,
      "criu_statistics":{"forking_time":1000,"restore_time":150000,"pages_restored":4096}})");
  });
  spit(api.dir() / "web.tar", archive_bytes);
  auto rt = makePodmanApiRuntime(api.socket());
  RestoreOptions o;
  o.archive = api.dir() / "web.tar";
  auto st = rt->restore("web", o);
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_TRUE(same.load());
  EXPECT_DOUBLE_EQ(st->runtime_ms, 300.0);
  EXPECT_DOUBLE_EQ(st->criu_restore_ms, 150.0);
  EXPECT_DOUBLE_EQ(st->criu_forking_ms, 1.0);
  EXPECT_EQ(st->pages_restored, 4096U);
  EXPECT_GT(st->podman_ms, 0.0);
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/v5.0.0/libpod/containers/web/restore");
  EXPECT_EQ(seen[0].header("content-length").value_or(""), std::to_string(archive_bytes.size()));
  for (const char* p : {"import=true", "tcpEstablished=true", "fileLocks=true", "printStats=true"})
    EXPECT_TRUE(seen[0].hasParam(p)) << p << " in " << seen[0].query;
}

TEST(ApiRestore, InPlaceSendsNoBody) {
  FakePodmanApi api(
      [](const FakeRequest&) { return answer(200, R"({"Id":"3f1c","runtime_restore_duration":1})"); });
  auto rt = makePodmanApiRuntime(api.socket());
  RestoreOptions o;
  o.file_locks = false;
  auto st = rt->restore("web", o);
  ASSERT_TRUE(st.ok()) << st.error().message();
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].path, "/v5.0.0/libpod/containers/web/restore");
  EXPECT_TRUE(seen[0].hasParam("fileLocks=false"));
  EXPECT_EQ(seen[0].query.find("import"), std::string::npos);
  EXPECT_TRUE(seen[0].body.empty());
}

TEST(ApiRestore, AFailureIsDiagnosedFromRuncsMessageAndCriusLog) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  const fs::path log = api.dir() / "restore.log";
  spit(log, "(00.100) Error (criu/sk-inet.c:900): In-flight connection (l) for 7\n");
  FakePodmanApi failing([&](const FakeRequest&) {
    return answer(500, podmanError(500, "OCI runtime error",
                                   "OCI runtime error: runc: criu failed: type RESTORE errno 0\nlog file: " +
                                       log.string()));
  });
  spit(failing.dir() / "web.tar", "tar");
  auto rt = makePodmanApiRuntime(failing.socket());
  auto st = rt->restore("web", RestoreOptions{.archive = failing.dir() / "web.tar"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().what.find("restore of web failed (HTTP 500): OCI runtime error"), std::string::npos)
      << st.error().what;
  EXPECT_NE(st.error().hint.find("skip-in-flight"), std::string::npos) << st.error().hint;
}

TEST(ApiRestore, AMissingArchiveIsSaidBeforeAnythingIsSent) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  auto rt = makePodmanApiRuntime(api.socket());
  auto st = rt->restore("web", RestoreOptions{.archive = api.dir() / "missing.tar"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().what.find("restore of web failed: cannot open"), std::string::npos) << st.error().what;
  EXPECT_TRUE(api.requests().empty());
}

// ---- images ------------------------------------------------------------------------

TEST(ApiImages, SaveStreamsTheArchiveAndLoadUploadsIt) {
  const std::string image = pattern(std::size_t{2} << 20, 6);
  std::atomic<bool> uploaded_same{false};
  FakePodmanApi api([&](const FakeRequest& q) {
    if (q.method == "GET") {
      FakeResponse r = answer(200, image, "application/x-tar");
      r.chunked = true;
      return r;
    }
    uploaded_same = q.body == image;
    return answer(200, R"({"Names":["localhost/ferry-web:1"]})");
  });
  auto rt = makePodmanApiRuntime(api.socket());
  const fs::path file = api.dir() / "image.tar";
  ASSERT_TRUE(rt->saveImage("5d2b0f3c1e4a", file).ok());
  EXPECT_TRUE(slurp(file) == image);
  auto loaded = rt->loadImage(file);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(*loaded, "Loaded image: localhost/ferry-web:1");
  EXPECT_TRUE(uploaded_same.load());
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].path, "/v5.0.0/libpod/images/5d2b0f3c1e4a/get");
  EXPECT_TRUE(seen[0].hasParam("format=oci-archive"));
  EXPECT_EQ(seen[1].method, "POST");
  EXPECT_EQ(seen[1].path, "/v5.0.0/libpod/images/load");
}

TEST(ApiImages, AFailedSaveLeavesNoArchive) {
  FakePodmanApi api([](const FakeRequest&) {
    return answer(404, podmanError(404, "image not known", "failed to find image 5d2b: image not known"));
  });
  auto rt = makePodmanApiRuntime(api.socket());
  const fs::path file = api.dir() / "image.tar";
  auto s = rt->saveImage("5d2b", file);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().what,
            "podman image save 5d2b failed (HTTP 404): failed to find image 5d2b: image not known");
  EXPECT_FALSE(fs::exists(file));
}

// ---- the service itself ------------------------------------------------------------

TEST(ApiService, AServiceThatNeverAnswersHitsTheDeadline) {
  FakePodmanApi api([](const FakeRequest&) {
    FakeResponse r;
    r.never_answer = true;
    return r;
  });
  RuntimeOptions ro;
  ro.command_timeout = 300ms;
  auto rt = makePodmanApiRuntime(api.socket(), ro);
  auto started = std::chrono::steady_clock::now();
  auto c = rt->inspect("web");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  ASSERT_FALSE(c.ok());
  const auto& e = c.error();
  EXPECT_NE(e.what.find("podman container inspect web timed out after"), std::string::npos) << e.what;
  EXPECT_NE(e.what.find("did not answer GET /v5.0.0/libpod/containers/web/json in time"), std::string::npos)
      << e.what;
  EXPECT_NE(e.hint.find("systemctl restart podman.service"), std::string::npos) << e.hint;
  EXPECT_NE(e.hint.find("podman system service"), std::string::npos) << e.hint;

  // A checkpoint's deadline is its own, not command_timeout.
  CheckpointOptions o;
  o.archive = api.dir() / "web.tar";
  o.timeout = 200ms;
  ro.command_timeout = 30s;
  auto rt2 = makePodmanApiRuntime(api.socket(), ro);
  started = std::chrono::steady_clock::now();
  auto st = rt2->checkpoint("web", o);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().what.find("checkpoint of web timed out after"), std::string::npos) << st.error().what;
}

TEST(ApiService, NoServiceSaysHowToStartIt) {
  auto dir = fs::temp_directory_path() / ("ferry-api-none-" + std::to_string(::getpid()));
  auto rt = makePodmanApiRuntime(dir / "podman.sock");
  auto c = rt->exists("web");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().what.find("podman container exists web failed: the Podman API service at " +
                                (dir / "podman.sock").string() + " is not running (no socket)"),
            std::string::npos)
      << c.error().what;
  EXPECT_NE(c.error().hint.find("systemctl start podman.socket"), std::string::npos);
  EXPECT_NE(c.error().hint.find("podman system service --time=0 unix://" + (dir / "podman.sock").string()),
            std::string::npos)
      << c.error().hint;
}

// ---- the cgroup side, shared with the CLI runtime ----------------------------------

TEST(RuntimesShareTheCgroupCode, FreezeAndMemoryFromCgroupFiles) {
  char tmpl[] = "/tmp/ferry-cgroup-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  const fs::path cg = root / "libpod_parent" / "libpod-3f1c";
  fs::create_directories(cg);
  spit(cg / "cgroup.events", "populated 1\nfrozen 1\n");  // the kernel's answer, already there
  spit(cg / "memory.stat", "anon 1000\nfile 5000\nshmem 24\n");
  RuntimeOptions ro;
  ro.cgroup_root = root;
  ro.freeze_timeout = 200ms;
  testing::FakeRunner runner;
  auto cli = makePodmanRuntime(runner, ro);
  auto api = makePodmanApiRuntime(root / "podman.sock", ro);
  ContainerInfo c;
  c.name = "web";
  c.cgroup_path = "/libpod_parent/libpod-3f1c";
  for (ContainerRuntime* rt : {cli.get(), api.get()}) {
    spit(cg / "cgroup.freeze", "0");  // the kernel's file takes a write without truncating
    ASSERT_TRUE(rt->freeze(c).ok());
    EXPECT_EQ(slurp(cg / "cgroup.freeze"), "1");
    EXPECT_TRUE(*rt->frozen(c));
    EXPECT_EQ(*rt->memoryBytes(c), 1024U);
    auto thaw = rt->thaw(c);  // cgroup.events still says frozen: the wait ends at freeze_timeout
    ASSERT_FALSE(thaw.ok());
    EXPECT_NE(thaw.error().what.find("thawing container web did not finish within 200 ms"),
              std::string::npos);
  }
  std::error_code ec;
  fs::remove_all(root, ec);
}

}  // namespace
}  // namespace ferry::checkpoint
