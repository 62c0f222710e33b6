// Writes the seeds that come from the real encoders: valid packets (corpus/packet), frames
// (corpus/frame) and the same frames length-prefixed as a stream carries them (corpus/stream),
// for cluster "chorus", the daemon's default and what the fuzz targets expect; and one HTTP
// conversation that needs a real task id (corpus/http). The other seeds are hand-written. The
// committed seeds came from this; run it again after a change to schemas/chorus.fbs:
//   build-fuzz/test/fuzz/make_seeds test/fuzz/corpus
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "net/seal.hpp"
#include "wire/codec.hpp"
#include "wire/key_hash.hpp"

using namespace chorus;
namespace fs = std::filesystem;

namespace {

const std::string kCluster = "chorus";

void write(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> framed(const std::vector<std::vector<uint8_t>>& frames) {
    std::vector<uint8_t> out;
    for (const auto& f : frames) {
        const auto n = static_cast<uint32_t>(f.size());
        out.insert(out.end(), {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                               static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
        out.insert(out.end(), f.begin(), f.end());
    }
    return out;
}

Packet packet(Body body, std::vector<Update> updates = {}) {
    Packet p;
    p.cluster = kCluster;
    p.sender = "node-a";
    p.sender_addr = Address{"127.0.0.1:7900"};
    p.sender_load_milli = 250;
    p.body = std::move(body);
    p.updates = std::move(updates);
    return p;
}

AliveUpdate alive(std::string name, uint32_t incarnation, Tags tags = {}) {
    return AliveUpdate{.name = Name(name),
                       .addr = Address{"127.0.0.1:7901"},
                       .http = "127.0.0.1:7981",
                       .incarnation = Incarnation{incarnation},
                       .tags = std::move(tags)};
}

TaskSpec spec(std::string key, std::string suffix, std::string type, std::string payload) {
    TaskSpec s;
    s.id = make_task_id(wire::key_hash(key), suffix);
    s.key = std::move(key);
    s.type = std::move(type);
    s.payload = std::move(payload);
    s.timeout = milliseconds(50);
    return s;
}

Task task(TaskSpec s, TaskState state) {
    Task t;
    t.spec = std::move(s);
    t.state = state;
    t.owner = "node-a";
    t.created = Time{} + milliseconds(1'700'000'000'000);
    t.attempts = 1;
    if (is_finished(state)) {
        t.started = t.created + milliseconds(5);
        t.finished = t.created + milliseconds(9);
    }
    if (state == TaskState::succeeded) t.result = R"({"ok":true})";
    if (state == TaskState::failed) {
        t.error = "exit status 3";
        t.exit_code = 3;
    }
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_seeds CORPUS_DIR (test/fuzz/corpus)\n");
        return 2;
    }
    const fs::path out = argv[1];

    // ---- datagrams
    const fs::path pk = out / "packet";
    write(pk, "ping", wire::encode(packet(Ping{1, "node-b"})));
    write(pk, "ping_req", wire::encode(packet(PingReq{2, "node-c", Address{"127.0.0.1:7902"}})));
    write(pk, "ack", wire::encode(packet(Ack{3})));
    write(pk, "nack", wire::encode(packet(Nack{4})));
    write(pk, "gossip_only", wire::encode(packet(std::monostate{}, {alive("node-b", 1)})));
    write(pk, "ping_with_updates",
          wire::encode(
              packet(Ping{5, "node-b"}, {alive("node-b", 7, {{"role", "db"}, {"zone", "eu-1"}}),
                                         SuspectUpdate{"node-c", Incarnation{2}, "node-a"},
                                         DeadUpdate{"node-d", Incarnation{9}, "node-a", false},
                                         DeadUpdate{"node-e", Incarnation{1}, "node-e", true}})));
    write(pk, "unicode_names",
          wire::encode(packet(Ack{6}, {alive("nœud-β", 3, {{"région", "île-de-france"}})})));

    // ---- stream frames
    const fs::path fr = out / "frame";
    const fs::path st = out / "stream";
    std::vector<std::pair<std::string, std::vector<uint8_t>>> frames;

    const auto member = [](std::string name, std::string addr, MemberState state) {
        return MemberSnapshot{.name = Name(name),
                              .addr = Address{Name(addr)},
                              .incarnation = Incarnation{3},
                              .state = state};
    };
    PushPull join;
    join.cluster = kCluster;
    join.sender = "node-b";
    join.join = true;
    join.members = {member("node-b", "127.0.0.1:7901", MemberState::alive)};
    join.members[0].http = "127.0.0.1:7981";
    frames.emplace_back("push_pull_join", wire::encode(join));

    PushPull full = join;
    full.join = false;
    full.members.push_back(member("node-c", "127.0.0.1:7902", MemberState::suspect));
    full.members.back().tags = {{"role", "web"}};
    full.members.back().load_milli = 1500;
    // A tombstone's address may be unknown.
    full.members.push_back(member("node-d", "", MemberState::dead));
    full.members.push_back(member("node-e", "127.0.0.1:7904", MemberState::left));
    frames.emplace_back("push_pull_members", wire::encode(full));

    const auto task_frame = [](const TaskMessage& m) {
        return wire::encode(kCluster, Name("node-b"), m);
    };
    frames.emplace_back("task_submit_echo",
                        task_frame(TaskSubmit{11, spec("user:42", "s1", "echo", R"({"hello":1})"),
                                              milliseconds(2000)}));
    frames.emplace_back("task_submit_sleep",
                        task_frame(TaskSubmit{12, spec("k", "s2", "sleep", R"({"ms":5})"), {}}));
    frames.emplace_back("task_query", task_frame(TaskQuery{13, spec("user:42", "s1", "", "").id,
                                                           false, milliseconds(20)}));
    frames.emplace_back("task_query_cancel",
                        task_frame(TaskQuery{14, spec("k", "s2", "", "").id, true, {}}));
    frames.emplace_back("task_reply_error",
                        task_frame(TaskReply{15, 503, "full", "no slot free", 1000, 16, {}, 0}));
    frames.emplace_back(
        "task_reply_task",
        task_frame(TaskReply{
            16, 200, "", "", 250, 16,
            task(spec("user:42", "s1", "echo", R"({"hello":1})"), TaskState::succeeded), 2}));
    frames.emplace_back(
        "task_copy",
        task_frame(
            TaskCopy{17, task(spec("doc-7", "s3", "echo", "[1,2]"), TaskState::queued), false}));
    frames.emplace_back(
        "task_copy_outcome",
        task_frame(
            TaskCopy{0, task(spec("doc-7", "s3", "echo", "[1,2]"), TaskState::failed), false}));
    frames.emplace_back(
        "task_copy_drop",
        task_frame(
            TaskCopy{18, task(spec("doc-7", "s3", "echo", "[1,2]"), TaskState::queued), true}));

    wire::KeyBytes key{};
    for (size_t i = 0; i < key.size(); ++i)
        key[i] = static_cast<uint8_t>(i);
    const auto keyring_frame = [](const wire::KeyringMessage& m) {
        return wire::encode(kCluster, Name("node-a"), m);
    };
    frames.emplace_back("keyring_list", keyring_frame(wire::KeyringOp{19, {}, {}}));
    frames.emplace_back("keyring_install",
                        keyring_frame(wire::KeyringOp{20, wire::KeyringOp::Kind::install, key}));
    frames.emplace_back("keyring_reply", keyring_frame(wire::KeyringReply{21, "", "", {key}, 0}));
    frames.emplace_back("keyring_refused", keyring_frame(wire::KeyringReply{
                                               22, "unknown_key", "not installed", {}, 0}));

    for (const auto& [name, bytes] : frames) {
        write(fr, name, bytes);
        write(st, name, framed({bytes}));
    }
    // A peer's whole conversation on one connection.
    const auto frame = [&](std::string_view name) {
        return std::find_if(frames.begin(), frames.end(),
                            [&](const auto& f) { return f.first == name; })
            ->second;
    };
    write(st, "submit_then_query", framed({frame("task_submit_echo"), frame("task_query")}));
    write(st, "join_then_copy", framed({frame("push_pull_join"), frame("task_copy")}));

    // ---- HTTP: a task posted with the client's own id, then read back by its full id.
    const std::string body = R"({"key": "k", "type": "echo", "payload": [1], "id": "nightly-17"})";
    const std::string id = spec("k", "nightly-17", "", "").id;
    std::string conversation = "POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    conversation += "Content-Type: application/json\r\n";
    conversation += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    conversation += "GET /v1/tasks/" + id + "?wait=100ms HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    conversation +=
        "DELETE /v1/tasks/" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    write(out / "http", "post_then_get_by_id", {conversation.begin(), conversation.end()});

    std::printf("seeds written under %s\n", out.c_str());
    // ---- sealed: a datagram and a frame as an agent with --encrypt sends them, under the key
    // fuzz_seal opens with (the bytes 0 to 31). The salt is random: each run writes other bytes.
    net::Sealer sealer(net::Keyring::make({key}).value());
    const fs::path se = out / "seal";
    write(se, "ping", sealer.seal(kCluster, wire::encode(packet(Ping{1, "node-b"}))));
    write(se, "task_submit_echo", sealer.seal(kCluster, frame("task_submit_echo")));
    write(se, "empty", sealer.seal(kCluster, {}));
    return 0;
}
