#include "samples.h"

#include <capnp/any.h>

namespace ferry::protocol::testing {

namespace {

void setContainers(capnp::List<wire::ContainerRef>::Builder list) {
  list[0].setName("web");
  list[0].setId("5f1c0ffee");
  list[0].setImageId("sha256:abc");
  list[1].setName("db");
  list[1].setId("7a2beef");
  list[1].setImageId("sha256:def");
}

// With the fields added later (bodies born after them use this one; older bodies keep
// setContainers so their golden files still read like the samples).
// (Each element is filled completely before the next, so the bytes are canonical.)
void setContainersV2(capnp::List<wire::ContainerRef>::Builder list) {
  list[0].setName("web");
  list[0].setId("5f1c0ffee");
  list[0].setImageId("sha256:abc");
  list[0].setImageName("localhost/ferry-web:0dbd9670495e2845");
  auto ports = list[0].initHostPorts(1);
  ports.set(0, 80);
  list[0].setArchiveBytes(21235200);
  list[1].setName("db");
  list[1].setId("7a2beef");
  list[1].setImageId("sha256:def");
}

std::vector<Sample> makeSamples() {
  std::vector<Sample> s;
  s.push_back({"hello", [](wire::Message::Builder m) {
                 auto h = m.getBody().initHello();
                 h.setProtocolVersion(1);  // a version-1 Hello: the golden file is its bytes
                 h.setMinProtocolVersion(1);
                 h.setNodeId("a");
                 h.setRole(wire::Role::ACTIVE);
                 h.setEpoch(1700000000000);
                 h.setFirstSeq(17);
                 h.setResumeEpoch(1700000000123);
                 h.setResumeSeq(42);
                 h.setMaxMessageBytes(8u << 20);
               }});
  s.push_back({"heartbeat", [](wire::Message::Builder m) {
                 auto h = m.getBody().initHeartbeat();
                 h.setSentAtMs(123456);
                 h.setEchoMs(123000);
               }});
  s.push_back({"credit", [](wire::Message::Builder m) {
                 auto c = m.getBody().initCredit();
                 c.setEpoch(1700000000000);
                 c.setThroughSeq(99);
                 c.setWindowBytes(8u << 20);
                 c.setWindowMessages(1024);
               }});
  s.push_back({"ack", [](wire::Message::Builder m) {
                 auto a = m.getBody().initAck();
                 a.setEpoch(1700000000000);
                 a.setSeq(99);
               }});
  s.push_back({"status", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(3);
                 auto st = m.getBody().initStatus();
                 st.setRole(wire::Role::STANDBY);
                 st.setReplicaState(wire::ReplicaState::MIRRORING);
                 st.setLagBytes(65536);
                 st.setLagMs(12);
                 st.setText("mirroring");
               }});
  s.push_back({"error", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(4);
                 auto e = m.getBody().initError();
                 e.setCode(wire::ErrorCode::PATH_REFUSED);
                 e.setWhat("path '../x' refused");
                 e.setHint("upgrade the peer");
                 e.setRefusedEpoch(7);
                 e.setRefusedSeq(2);
               }});
  s.push_back({"fileMeta", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(5);
                 auto f = m.getBody().initFileMeta();
                 f.setPath("mysql/ibdata1");
                 f.setPathId(12);
                 f.setKind(wire::FileKind::FILE);
                 f.setMode(0660);
                 f.setUid(999);
                 f.setGid(999);
                 f.setSize(12582912);
                 f.setMtimeNs(1700000000123456789);
               }});
  s.push_back({"blockData", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(6);
                 auto b = m.getBody().initBlockData();
                 b.getFile().setPathId(12);
                 b.setOffset(65536);
                 b.setLength(64);
                 b.setXxh3(0x1234567890abcdefULL);
                 b.setCompression(wire::Compression::NONE);
                 auto data = b.initData(64);
                 for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<kj::byte>(i * 7);
               }});
  s.push_back({"blockBundle", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(32);
                 auto blocks = m.getBody().initBlockBundle().initBlocks(2);
                 for (unsigned k = 0; k < 2; ++k) {
                   auto b = blocks[k];
                   b.getFile().setPath("ibdata1");
                   b.setOffset(16384ULL * k);
                   b.setLength(32);
                   b.setXxh3(0x1234567890abcdefULL + k);
                   b.setCompression(wire::Compression::NONE);
                   auto data = b.initData(32);
                   for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<kj::byte>(i * 5 + k);
                 }
               }});
  s.push_back({"truncate", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(7);
                 auto t = m.getBody().initTruncate();
                 t.getFile().setPath("videos/big.mp4");
                 t.setSize(4096);
               }});
  s.push_back({"batchBegin", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(8);
                 auto b = m.getBody().initBatchBegin();
                 b.setEpoch(3);
                 b.setSeq(1001);
                 b.setEntries(3);
                 b.setBytes(131072);
               }});
  s.push_back({"batchEnd", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(9);
                 auto b = m.getBody().initBatchEnd();
                 b.setEpoch(3);
                 b.setSeq(1001);
                 b.setEntries(3);
                 b.setBytes(131072);
                 b.setSourceLagMs(40);
               }});
  s.push_back({"prepare", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(10);
                 auto p = m.getBody().initPrepare();
                 p.setMigrationId("m-20261125-0001");
                 p.setEpoch(5);
                 p.setMode(wire::MigrationMode::STOP_AND_COPY);
                 setContainers(p.initContainers(2));
                 p.setSourceNodeId("a");
                 p.setExpectedCheckpointBytes(50u << 20);
                 p.setExpectedDeltaBytes(1u << 20);
                 p.setDeadlineMs(30000);
               }});
  s.push_back({"checkpointChunk", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(11);
                 auto c = m.getBody().initCheckpointChunk();
                 c.setMigrationId("m-20261125-0001");
                 c.setEpoch(5);
                 c.setContainer("db");
                 c.setFileName("checkpoint/pages-1.img");
                 c.setOffset(0);
                 auto data = c.initData(32);
                 for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<kj::byte>(255 - i);
                 c.setXxh3(0xfeedfacecafebeefULL);
                 c.setCompression(wire::Compression::NONE);
                 c.setLast(true);
                 c.setFileBytes(32);
                 c.setFileXxh3(0xfeedfacecafebeefULL);
               }});
  s.push_back({"commit", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(12);
                 auto c = m.getBody().initCommit();
                 c.setMigrationId("m-20261125-0001");
                 c.setEpoch(5);
                 setContainers(c.initContainers(2));
                 c.setCheckpointBytes(50u << 20);
                 c.setCheckpointXxh3(0xabcdefULL);
                 c.setDeltaBatchEpoch(3);
                 c.setDeltaBatchSeq(1001);
                 c.setDeltaBytes(131072);
               }});
  s.push_back({"committed", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(13);
                 auto c = m.getBody().initCommitted();
                 c.setMigrationId("m-20261125-0001");
                 c.setEpoch(5);
                 setContainers(c.initContainers(2));
                 c.setRestoreMs(850);
                 c.setHealthyAtMs(1700000001000);
               }});
  s.push_back({"abort", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(14);
                 auto a = m.getBody().initAbort();
                 a.setMigrationId("m-20261125-0001");
                 a.setEpoch(5);
                 a.setPhase("restore");
                 a.setReason("restore of db failed: exit 1");
               }});
  s.push_back({"rolledBack", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(15);
                 auto r = m.getBody().initRolledBack();
                 r.setMigrationId("m-20261125-0001");
                 r.setEpoch(5);
                 r.setReason("target restore failed");
                 setContainers(r.initContainers(2));
               }});
  s.push_back({"prepareReply", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(16);
                 auto r = m.getBody().initPrepareReply();
                 r.setMigrationId("m-20261125-0001");
                 r.setEpoch(5);
                 r.setOk(false);
                 auto problems = r.initProblems(1);
                 problems[0].setWhat("host port 80 is in use on b");
                 problems[0].setHint("stop what listens there");
                 auto missing = r.initMissingImages(1);
                 missing.set(0, "acb0adf96d4173808cb4aa74b8078971fe33bccb7d5b9aec6b97d2d222b124f7");
                 r.setFreeBytes(5ull << 30);
                 r.setReplicaConsistent(true);
                 r.setHighestEpoch(4);
               }});
  s.push_back({"restored", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(17);
                 auto r = m.getBody().initRestored();
                 r.setMigrationId("m-20261125-0001");
                 r.setEpoch(5);
                 setContainersV2(r.initContainers(2));
                 r.setRestoreMs(1200);
                 r.setHealthMs(40);
                 r.setReplyDelayMs(41);
                 r.setStatsJson(R"({"db":{"podman_ms":1546.9}})");
               }});
  s.push_back({"decision", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(18);
                 auto d = m.getBody().initDecision();
                 d.setMigrationId("m-20261125-0001");
                 d.setEpoch(5);
                 d.setCommit(true);
               }});
  s.push_back({"outcomeQuery", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(19);
                 m.getBody().initOutcomeQuery().setMigrationId("m-20261125-0001");
               }});
  s.push_back({"outcome", [](wire::Message::Builder m) {
                 m.setEpoch(7);
                 m.setSeq(20);
                 auto o = m.getBody().initOutcome();
                 o.setMigrationId("m-20261125-0001");
                 o.setEpoch(5);
                 o.setState(wire::MigrationState::RESTORED);
               }});
  s.push_back({"resumeState", [](wire::Message::Builder m) {
                 auto r = m.getBody().initResumeState();
                 r.setEpoch(3);
                 r.setSeq(41);
                 r.setConsistent(false);
                 auto intent = r.initIntent(2);
                 intent.set(0, "mysql/ibdata1");
                 intent.set(1, "www/media/a.mp4");
               }});
  s.push_back({"hashRequest", [](wire::Message::Builder m) {
                 auto h = m.getBody().initHashRequest();
                 h.setBlockSize(65536);
                 h.initPaths(1).set(0, "mysql/ibdata1");
               }});
  s.push_back({"fileHashes", [](wire::Message::Builder m) {
                 auto f = m.getBody().initFileHashes();
                 auto e = f.initEntries(1)[0];
                 e.setPath("mysql/ibdata1");
                 e.setExists(true);
                 e.getMeta().setMode(0660);
                 e.getMeta().setSize(131072);
                 auto h = e.initHashes(2);
                 h.set(0, 0x1234);
                 h.set(1, 0x5678);
                 f.setLast(true);
               }});
  s.push_back({"batchApplied", [](wire::Message::Builder m) {
                 auto b = m.getBody().initBatchApplied();
                 b.setEpoch(3);
                 b.setSeq(42);
               }});
  s.push_back({"manifestRequest",
               [](wire::Message::Builder m) { m.getBody().initManifestRequest().setRequestId(9); }});
  s.push_back({"manifestChunk", [](wire::Message::Builder m) {
                 auto c = m.getBody().initManifestChunk();
                 c.setRequestId(9);
                 auto e = c.initEntries(1)[0];
                 e.setPath("www/index.php");
                 e.setKind(wire::FileKind::FILE);
                 e.setMode(0644);
                 e.setSize(10);
                 c.setLast(true);
               }});
  s.push_back({"resumeQuery", [](wire::Message::Builder m) { m.getBody().setResumeQuery(); }});
  return s;
}

}  // namespace

const std::vector<Sample>& samples() {
  static const std::vector<Sample> all = makeSamples();
  return all;
}

kj::Array<capnp::word> encodeSample(const Sample& sample) {
  capnp::MallocMessageBuilder b;
  sample.fill(b.initRoot<wire::Message>());
  return capnp::messageToFlatArray(b);
}

kj::Array<capnp::word> encodeSampleBody(const Sample& sample) {
  capnp::MallocMessageBuilder env;
  sample.fill(env.initRoot<wire::Message>());
  // The body's single pointer field (or its data-only struct) becomes a new root.
  // Every non-void body is pointer 0 of the envelope (the union's shared slot).
  capnp::MallocMessageBuilder out;
  auto envStruct = capnp::toAny(env.getRoot<wire::Message>().asReader());
  if (envStruct.getPointerSection().size() == 0 || envStruct.getPointerSection()[0].isNull()) return nullptr;
  out.getRoot<capnp::AnyPointer>().set(envStruct.getPointerSection()[0]);
  return capnp::messageToFlatArray(out);
}

std::string toBytes(kj::ArrayPtr<const capnp::word> words) {
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

}  // namespace ferry::protocol::testing
