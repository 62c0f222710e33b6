#include "wire/codec.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/rng.hpp"

using namespace chorus;
using namespace chorus::wire;

namespace {

Limits limits() {
    Limits l;
    l.cluster = "test";
    return l;
}

std::string random_string(Rng& r, size_t min, size_t max) {
    std::string s(min + r.below(max - min + 1), 'x');
    for (char& c : s)
        c = static_cast<char>('a' + r.below(26));
    return s;
}

Update random_update(Rng& r) {
    switch (r.below(3)) {
        case 0: {
            Tags tags;
            const size_t n = r.below(4);
            for (size_t i = 0; i < n; ++i)
                tags.emplace_back("k" + std::to_string(i), random_string(r, 0, 20));
            return AliveUpdate{random_string(r, 1, 60),
                               Address{random_string(r, 1, 40)},
                               random_string(r, 0, 40),
                               Incarnation{r.next() >> r.below(64)},
                               tags,
                               1};
        }
        case 1:
            return SuspectUpdate{random_string(r, 1, 60), Incarnation{r.next() >> r.below(64)},
                                 random_string(r, 1, 60)};
        default:
            return DeadUpdate{random_string(r, 1, 60), Incarnation{r.next() >> r.below(64)},
                              random_string(r, 1, 60), r.chance(0.5)};
    }
}

Packet random_packet(Rng& r) {
    Packet p;
    p.cluster = "test";
    p.sender = random_string(r, 1, 60);
    p.sender_addr = Address{random_string(r, 1, 40)};
    p.sender_load_milli = static_cast<uint32_t>(r.below(5000));
    if (r.below(2) == 0) p.sender_ring_checksum = static_cast<uint32_t>(r.next() | 1);
    switch (r.below(5)) {
        case 0:
            break;
        case 1:
            p.body = Ping{static_cast<uint32_t>(r.next()), random_string(r, 1, 60)};
            break;
        case 2:
            p.body = PingReq{static_cast<uint32_t>(r.next()), random_string(r, 1, 60),
                             Address{random_string(r, 1, 40)}};
            break;
        case 3:
            p.body = Ack{static_cast<uint32_t>(r.next())};
            break;
        default:
            p.body = Nack{static_cast<uint32_t>(r.next())};
            break;
    }
    const size_t n = r.below(32);
    for (size_t i = 0; i < n; ++i)
        p.updates.push_back(random_update(r));
    return p;
}

size_t bound_of(const Packet& p) {
    size_t b = encoded_size_bound(p);
    for (const auto& u : p.updates)
        b += encoded_size_bound(u);
    return b;
}

Packet sample_packet() {
    Packet p;
    p.cluster = "test";
    p.sender = "node-1";
    p.sender_addr = Address{"10.0.0.1:7900"};
    p.sender_load_milli = 250;
    p.body = PingReq{42, "node-2", Address{"10.0.0.2:7900"}};
    p.updates = {AliveUpdate{"node-3",
                             Address{"10.0.0.3:7900"},
                             "10.0.0.3:7980",
                             Incarnation{7},
                             {{"role", "db"}, {"zone", "a"}},
                             1},
                 SuspectUpdate{"node-4", Incarnation{2}, "node-1"},
                 DeadUpdate{"node-5", Incarnation{9}, "node-5", true}};
    return p;
}

}  // namespace

TEST_CASE("packets survive a round trip unchanged") {
    Packet p = sample_packet();
    p.sender_ring_checksum = 0xfedcba98;
    auto d = decode_packet(encode(p), limits());
    REQUIRE(d.ok());
    REQUIRE(d->sender == p.sender);
    REQUIRE(d->sender_addr == p.sender_addr);
    REQUIRE(d->sender_load_milli == 250);
    REQUIRE(d->sender_ring_checksum == 0xfedcba98);
    const auto& req = std::get<PingReq>(d->body);
    REQUIRE(req.seq == 42);
    REQUIRE(req.target == "node-2");
    REQUIRE(req.target_addr == Address{"10.0.0.2:7900"});
    REQUIRE(d->updates.size() == 3);
    const auto& a = std::get<AliveUpdate>(d->updates[0]);
    REQUIRE(a.name == "node-3");
    REQUIRE(a.http == "10.0.0.3:7980");
    REQUIRE(a.incarnation == Incarnation{7});
    REQUIRE(a.tags == Tags{{"role", "db"}, {"zone", "a"}});
    REQUIRE(std::get<SuspectUpdate>(d->updates[1]).from == "node-1");
    REQUIRE(std::get<DeadUpdate>(d->updates[2]).left);
}

TEST_CASE("random packets round trip and never exceed the core's size bound") {
    Rng r(11);
    for (int i = 0; i < 5000; ++i) {
        const Packet p = random_packet(r);
        const auto bytes = encode(p);
        INFO("packet " << i);
        REQUIRE(bytes.size() <= bound_of(p));
        // The bound is an upper bound, but not a wasteful one: it decides how many updates a
        // packet carries, so beyond the shared vtables (300 bytes charged for every shape an
        // update can take) it stays within a third of the truth.
        REQUIRE(bound_of(p) <= bytes.size() * 4 / 3 + 320);
        Limits l = limits();
        l.packet_bytes_max = 65000;
        auto d = decode_packet(bytes, l);
        REQUIRE(d.ok());
        REQUIRE(d->sender_ring_checksum == p.sender_ring_checksum);
        REQUIRE(d->updates.size() == p.updates.size());
        for (size_t k = 0; k < p.updates.size(); ++k) {
            const auto inc = [](const Update& u) {
                return std::visit([](const auto& x) { return x.incarnation; }, u);
            };
            REQUIRE(inc(d->updates[k]) == inc(p.updates[k]));  // all 64 bits
        }
        REQUIRE(d->body.index() == p.body.index());
    }
}

TEST_CASE("push-pull state survives a round trip") {
    PushPull pp;
    pp.cluster = "test";
    pp.sender = "a";
    pp.join = true;
    pp.members = {
        MemberSnapshot{
            "a", Address{"a:1"}, "a:2", Incarnation{3}, MemberState::alive, {{"k", "v"}}, 120, 1},
        MemberSnapshot{
            "b", Address{}, "", Incarnation{(1ull << 40) + 4}, MemberState::dead, {}, 0, 1}};
    auto d = decode_push_pull(encode(pp), limits());
    REQUIRE(d.ok());
    REQUIRE(d->join);
    REQUIRE(d->sender == "a");
    REQUIRE(d->members.size() == 2);
    REQUIRE(d->members[0].tags == Tags{{"k", "v"}});
    REQUIRE(d->members[0].load_milli == 120);
    REQUIRE(d->members[1].state == MemberState::dead);
    REQUIRE(d->members[1].incarnation == Incarnation{(1ull << 40) + 4});
}

TEST_CASE("another cluster's or protocol version's packets are rejected with their reason") {
    Packet p = sample_packet();
    p.cluster = "other";
    auto d = decode_packet(encode(p), limits());
    REQUIRE_FALSE(d.ok());
    REQUIRE(d.error().reason == DecodeError::wrong_cluster);

    p = sample_packet();
    p.version = 9;
    d = decode_packet(encode(p), limits());
    REQUIRE_FALSE(d.ok());
    REQUIRE(d.error().reason == DecodeError::wrong_version);

    PushPull pp;
    pp.cluster = "other";
    pp.sender = "a";
    REQUIRE(decode_push_pull(encode(pp), limits()).error().reason == DecodeError::wrong_cluster);
}

TEST_CASE("oversized buffers are rejected before they are parsed") {
    std::vector<uint8_t> big(2000, 0);
    auto d = decode_packet(big, limits());
    REQUIRE(d.error().reason == DecodeError::too_large);
    Limits l = limits();
    l.frame_bytes_max = 100;
    REQUIRE(decode_push_pull(big, l).error().reason == DecodeError::too_large);
}

TEST_CASE("fields that break our bounds are rejected with what was wrong") {
    struct Row {
        const char* what;
        std::function<void(Packet&)> breaks;
    };
    const Row rows[] = {
        {"sender is missing", [](Packet& p) { p.sender = Name{}; }},
        {"sender_addr is missing", [](Packet& p) { p.sender_addr = Address{}; }},
        {"sender is 200 bytes", [](Packet& p) { p.sender = std::string(200, 's'); }},
        {"ping.target is missing",
         [](Packet& p) {
             p.body = Ping{1, ""};
         }},
        {"33 tags",
         [](Packet& p) {
             Tags t;
             for (int i = 0; i < 33; ++i)
                 t.emplace_back("k" + std::to_string(i), "v");
             p.updates = {AliveUpdate{"x", Address{"x"}, "", Incarnation{1}, t, 1}};
         }},
        {"duplicate tag key",
         [](Packet& p) {
             p.updates = {
                 AliveUpdate{"x", Address{"x"}, "", Incarnation{1}, {{"k", "a"}, {"k", "b"}}, 1}};
         }},
        {"suspect.from is missing",
         [](Packet& p) {
             p.updates = {SuspectUpdate{"x", Incarnation{1}, ""}};
         }},
    };
    for (const Row& r : rows) {
        Packet p = sample_packet();
        r.breaks(p);
        Limits l = limits();
        l.packet_bytes_max = 65000;
        auto d = decode_packet(encode(p), l);
        INFO(r.what);
        REQUIRE_FALSE(d.ok());
        REQUIRE(d.error().reason == DecodeError::bad_field);
        REQUIRE_FALSE(d.error().detail.empty());
    }
}

TEST_CASE("names, addresses, tags and task fields that are not clean text are rejected") {
    struct Row {
        const char* what;
        std::function<void(Packet&)> breaks;
        std::string field;
    };
    const Row rows[] = {
        {"a sender with a newline", [](Packet& p) { p.sender = "evil\nline"; }, "sender"},
        {"a member name that is not UTF-8",
         [](Packet& p) {
             p.updates = {AliveUpdate{"x\xff", Address{"x"}, "", Incarnation{1}, {}, 1}};
         },
         "alive.name"},
        {"an address with a NUL",
         [](Packet& p) {
             p.updates = {AliveUpdate{
                 "x", Address{std::string("1.2.3.4:5\0", 10)}, "", Incarnation{1}, {}, 1}};
         },
         "alive.addr"},
        {"a tag value with an escape character",
         [](Packet& p) {
             p.updates = {
                 AliveUpdate{"x", Address{"x"}, "", Incarnation{1}, {{"k", "\x1b[31m"}}, 1}};
         },
         "tag value"},
        {"a suspicion from an overlong name",
         [](Packet& p) {
             p.updates = {SuspectUpdate{"x", Incarnation{1}, "\xc0\xaf"}};
         },
         "suspect.from"},
    };
    for (const Row& r : rows) {
        Packet p = sample_packet();
        r.breaks(p);
        auto d = decode_packet(encode(p), limits());
        INFO(r.what);
        REQUIRE_FALSE(d.ok());
        REQUIRE(d.error().reason == DecodeError::bad_encoding);
        REQUIRE_THAT(d.error().detail, Catch::StartsWith(r.field));
    }
    SECTION("and in task frames") {
        TaskSubmit s;
        s.request = 1;
        s.spec = TaskSpec{"00000000000000aa-x", "key\n", "echo", "null", milliseconds(5), {}};
        auto d = decode_frame(encode("test", Name("n1"), s), limits());
        REQUIRE_FALSE(d.ok());
        REQUIRE(d.error().reason == DecodeError::bad_encoding);
        // Payloads are JSON text, shown only through encoders that replace bad bytes.
        s.spec.key = "key";
        s.spec.payload = "\"\xff\"";
        REQUIRE(decode_frame(encode("test", Name("n1"), s), limits()).ok());
    }
}

TEST_CASE("garbage is rejected, never trusted") {
    Rng r(5);
    for (int i = 0; i < 5000; ++i) {
        std::vector<uint8_t> junk(r.below(1400));
        for (auto& b : junk)
            b = static_cast<uint8_t>(r.next());
        REQUIRE_FALSE(decode_packet(junk, limits()).ok());
        REQUIRE_FALSE(decode_push_pull(junk, limits()).ok());
    }
}

TEST_CASE("every truncation of a valid packet is rejected, unless it only lost padding") {
    const Packet original = sample_packet();
    const auto bytes = encode(original);
    size_t rejected = 0;
    for (size_t n = 0; n < bytes.size(); ++n) {
        INFO("first " << n << " of " << bytes.size() << " bytes");
        auto d = decode_packet(std::span(bytes.data(), n), limits());
        if (!d.ok()) {
            ++rejected;
            continue;
        }
        // Flatbuffers pads strings at the end of the buffer; losing padding loses nothing.
        REQUIRE(encode(*d) == bytes);
    }
    REQUIRE(rejected + 8 >= bytes.size());
}

TEST_CASE("bit flips of a valid packet are rejected or decode to values within bounds") {
    const auto good = encode(sample_packet());
    const Limits l = limits();
    size_t rejected = 0;
    for (size_t bit = 0; bit < good.size() * 8; ++bit) {
        auto bytes = good;
        bytes[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        auto d = decode_packet(bytes, l);
        if (!d.ok()) {
            ++rejected;
            continue;
        }
        REQUIRE_FALSE(d->sender.empty());
        REQUIRE(d->sender.size() <= l.name_bytes_max);
        REQUIRE(d->cluster == "test");
        for (const auto& u : d->updates) {
            REQUIRE_FALSE(update_subject(u).empty());
            REQUIRE(update_subject(u).size() <= l.name_bytes_max);
        }
    }
    REQUIRE(rejected > 0);
}

TEST_CASE("decode stats count rejections by reason") {
    DecodeStats s;
    s.count(DecodeError::malformed);
    s.count(DecodeError::malformed);
    s.count(DecodeError::wrong_cluster);
    REQUIRE(s.rejected[static_cast<size_t>(DecodeError::malformed)] == 2);
    REQUIRE(s.total() == 3);
    REQUIRE(to_string(DecodeError::wrong_cluster) == "wrong_cluster");
}

namespace {

Task full_task() {
    Task t;
    t.spec = TaskSpec{
        make_task_id(0xfeed, 7),         "user:42", "exec", R"({"n":1})", milliseconds(2500),
        {{"role", "gpu"}, {"zone", "b"}}};
    t.state = TaskState::failed;
    t.owner = Name("n2");
    t.error = "exit status 3: boom";
    t.exit_code = 3;
    t.created = Time{} + milliseconds(1'700'000'000'000);
    t.started = t.created + milliseconds(5);
    t.finished = t.created + milliseconds(900);
    t.attempts = 1;
    return t;
}

template <typename T>
T round_trip(const TaskMessage& m) {
    const auto bytes = encode("test", Name("n1"), m);
    auto f = decode_frame(bytes, limits());
    REQUIRE(f.ok());
    REQUIRE(f->sender == "n1");
    REQUIRE(std::holds_alternative<T>(f->message));
    return std::get<T>(f->message);
}

}  // namespace

TEST_CASE("task frames survive a round trip unchanged") {
    const auto submit = round_trip<TaskSubmit>(TaskSubmit{9, full_task().spec, milliseconds(1500)});
    REQUIRE(submit.request == 9);
    REQUIRE(submit.budget == milliseconds(1500));
    REQUIRE(submit.spec.id == full_task().spec.id);
    REQUIRE(submit.spec.key == "user:42");
    REQUIRE(submit.spec.type == "exec");
    REQUIRE(submit.spec.payload == R"({"n":1})");
    REQUIRE(submit.spec.timeout == milliseconds(2500));
    REQUIRE(submit.spec.where == Tags{{"role", "gpu"}, {"zone", "b"}});

    const auto query = round_trip<TaskQuery>(TaskQuery{10, "abc", true, milliseconds(3000)});
    REQUIRE(query.request == 10);
    REQUIRE(query.id == "abc");
    REQUIRE(query.cancel);
    REQUIRE(query.wait == milliseconds(3000));

    const auto reply = round_trip<TaskReply>(
        TaskReply{11, 200, "", "", 1250, 16, std::optional<Task>(full_task()), 2});
    REQUIRE(reply.request == 11);
    REQUIRE(reply.replicas == 2);
    REQUIRE(reply.status == 200);
    REQUIRE(reply.load_milli == 1250);
    REQUIRE(reply.capacity == 16);
    REQUIRE(reply.task);
    const Task& t = *reply.task;
    const Task want = full_task();
    REQUIRE(t.state == TaskState::failed);
    REQUIRE(t.owner == "n2");
    REQUIRE(t.error == want.error);
    REQUIRE(t.exit_code == 3);
    REQUIRE(t.created == want.created);
    REQUIRE(t.started == want.started);
    REQUIRE(t.finished == want.finished);
    REQUIRE(t.attempts == 1);

    const auto copy = round_trip<TaskCopy>(TaskCopy{13, full_task()});
    REQUIRE(copy.request == 13);
    REQUIRE(copy.task.spec.id == want.spec.id);
    REQUIRE(copy.task.owner == "n2");
    REQUIRE(copy.task.exit_code == 3);
    REQUIRE(copy.task.finished == want.finished);
    REQUIRE_FALSE(copy.drop);
    REQUIRE(round_trip<TaskCopy>(TaskCopy{14, full_task(), true}).drop);

    // Coordinator placement: how a task is placed, and the assignment asked and answered.
    TaskSubmit ask{15, full_task().spec, milliseconds(200)};
    ask.spec.placement = TaskPlacement::coordinator;
    ask.spec.singleton = true;
    ask.assign = true;
    const auto asked = round_trip<TaskSubmit>(ask);
    REQUIRE(asked.assign);
    REQUIRE(asked.spec.placement == TaskPlacement::coordinator);
    REQUIRE(asked.spec.singleton);
    ask.avoid = {Name("n2"), Name("n3")};
    REQUIRE(round_trip<TaskSubmit>(ask).avoid == ask.avoid);
    REQUIRE_FALSE(submit.assign);
    REQUIRE(submit.spec.placement == TaskPlacement::ring);
    REQUIRE_FALSE(submit.spec.singleton);
    TaskReply named{16, 200, "", "", 0, 0, {}, 0};
    named.assignee = Name("n3");
    REQUIRE(round_trip<TaskReply>(named).assignee == Name("n3"));

    const auto refusal = round_trip<TaskReply>(TaskReply{12, 503, "full", "busy", 2000, 4, {}, 0});
    REQUIRE(refusal.code == "full");
    REQUIRE_FALSE(refusal.task);
    // A task frame is not a push-pull.
    REQUIRE_FALSE(decode_push_pull(encode("test", Name("n1"), TaskMessage{query}), limits()).ok());
}

TEST_CASE("task frames that break our bounds are rejected with what was wrong") {
    Limits l = limits();
    l.task_payload_bytes_max = 10;
    TaskSpec s = full_task().spec;
    s.payload = std::string(11, '1');
    auto big = decode_frame(encode("test", Name("n1"), TaskSubmit{1, s, {}}), l);
    REQUIRE_FALSE(big.ok());
    REQUIRE(big.error().reason == DecodeError::bad_field);
    REQUIRE(big.error().detail.find("task.payload") != std::string::npos);

    s = full_task().spec;
    s.key.clear();
    auto keyless = decode_frame(encode("test", Name("n1"), TaskSubmit{1, s, {}}), limits());
    REQUIRE(keyless.error().detail == "task.key is missing");

    s = full_task().spec;
    s.where.assign(40, Tag{"k", "v"});
    auto crowded = decode_frame(encode("test", Name("n1"), TaskSubmit{1, s, {}}), limits());
    REQUIRE_FALSE(crowded.ok());
    REQUIRE(crowded.error().detail.find("40 tags") != std::string::npos);

    Task odd = full_task();
    odd.state = static_cast<TaskState>(42);
    auto state =
        decode_frame(encode("test", Name("n1"), TaskReply{1, 200, "", "", 0, 1, odd, 0}), limits());
    REQUIRE(state.error().detail == "task state 42 is unknown");

    auto other = decode_frame(encode("prod", Name("n1"), TaskQuery{1, "x", false, {}}), limits());
    REQUIRE(other.error().reason == DecodeError::wrong_cluster);
}

TEST_CASE("every input fuzzing found to crash a decoder is rejected (test/fuzz/regressions)") {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(CHORUS_SOURCE_DIR) / "test" / "fuzz" / "regressions";
    size_t files = 0;
    for (const char* kind : {"packet", "frame", "stream"}) {
        for (const auto& entry : fs::directory_iterator(root / kind)) {
            if (!entry.is_regular_file() || entry.path().extension() == ".md") continue;
            std::ifstream in(entry.path(), std::ios::binary);
            const std::string bytes((std::istreambuf_iterator<char>(in)), {});
            const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                bytes.size());
            INFO(entry.path().string());
            Limits l = limits();
            l.cluster = "chorus";  // the reproducers carry the default cluster's name
            l.packet_bytes_max = 65000;
            // A stream carries 4-byte length prefixes before each frame.
            const auto body =
                std::string_view(kind) == "stream" && span.size() > 4 ? span.subspan(4) : span;
            if (std::string_view(kind) == "packet") {
                REQUIRE_FALSE(decode_packet(body, l).ok());
            } else {
                REQUIRE_FALSE(decode_frame(body, l).ok());
            }
            ++files;
        }
    }
    REQUIRE(files >= 11);
}

namespace {

// Golden encodings: the bytes of one sample of every message, kept in test/wire/golden/. The
// wire is append-only, so bytes written by this build must decode the same in every later one;
// a change that renumbers, retypes or reuses a field fails here. Encoding the samples must give
// the same bytes too: a deliberate, compatible change (a field appended) rewrites them with
// CHORUS_WRITE_GOLDEN=1 and says why in its commit.
std::vector<uint8_t> golden(const std::string& name, const std::vector<uint8_t>& encoded) {
    namespace fs = std::filesystem;
    const fs::path path =
        fs::path(CHORUS_SOURCE_DIR) / "test" / "wire" / "golden" / (name + ".bin");
    if (const char* w = std::getenv("CHORUS_WRITE_GOLDEN");
        w != nullptr && *w == '1' && !encoded.empty()) {
        fs::create_directories(path.parent_path());
        std::ofstream(path, std::ios::binary)
            .write(reinterpret_cast<const char*>(encoded.data()),
                   static_cast<std::streamsize>(encoded.size()));
    }
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), {});
}

// Not full_task(): the golden files were written from exactly this task, so it must never
// change, whatever other tests come to want of their sample.
Task golden_task() {
    Task t;
    t.spec = TaskSpec{"00000000000000ab-golden", "user:42", "echo", R"({"n":1})", seconds(30), {}};
    t.state = TaskState::failed;
    t.owner = "node-2";
    t.result = "";
    t.error = "exit status 3";
    t.exit_code = 3;
    t.created = Time{} + milliseconds(1'700'000'000'000);
    t.started = t.created + milliseconds(5);
    t.finished = t.created + milliseconds(900);
    t.attempts = 2;
    return t;
}

}  // namespace

TEST_CASE("every message decodes from the bytes an earlier build wrote (golden encodings)") {
    Limits l = limits();
    l.packet_bytes_max = 65000;
    SECTION("packets, with every body and update") {
        Packet p = sample_packet();
        for (const auto& [name, body] :
             std::vector<std::pair<std::string, Body>>{{"packet_ping", Ping{7, "node-2"}},
                                                       {"packet_ping_req", p.body},
                                                       {"packet_ack", Ack{9}},
                                                       {"packet_nack", Nack{11}},
                                                       {"packet_none", std::monostate{}}}) {
            INFO(name);
            p.body = body;
            p.updates.push_back(AliveUpdate{
                "node-6", Address{"10.0.0.6:7900"}, "", Incarnation{1ull << 40}, {}, 1});
            const auto bytes = golden(name, encode(p));
            REQUIRE(encode(p) == bytes);
            auto d = decode_packet(bytes, l);
            REQUIRE(d.ok());
            REQUIRE(d->sender == "node-1");
            REQUIRE(d->sender_load_milli == 250);
            REQUIRE(d->sender_ring_checksum == 0);  // written before packets carried one
            REQUIRE(d->body.index() == body.index());
            REQUIRE(d->updates.size() == 4);
            REQUIRE(std::get<AliveUpdate>(d->updates[0]).tags ==
                    Tags{{"role", "db"}, {"zone", "a"}});
            REQUIRE(std::get<SuspectUpdate>(d->updates[1]).incarnation == Incarnation{2});
            REQUIRE(std::get<DeadUpdate>(d->updates[2]).left);
            REQUIRE(std::get<AliveUpdate>(d->updates[3]).incarnation == Incarnation{1ull << 40});
            p.updates.pop_back();
        }
    }
    SECTION("push-pull") {
        PushPull pp;
        pp.cluster = "test";
        pp.sender = "a";
        pp.join = true;
        pp.members = {
            MemberSnapshot{"a",
                           Address{"a:1"},
                           "a:2",
                           Incarnation{3},
                           MemberState::suspect,
                           {{"k", "v"}},
                           120,
                           1},
            MemberSnapshot{
                "b", Address{}, "", Incarnation{(1ull << 33) + 4}, MemberState::left, {}, 0, 1}};
        const auto bytes = golden("push_pull", encode(pp));
        REQUIRE(encode(pp) == bytes);
        auto d = decode_push_pull(bytes, l);
        REQUIRE(d.ok());
        REQUIRE(d->join);
        REQUIRE(d->members.size() == 2);
        REQUIRE(d->members[0].state == MemberState::suspect);
        REQUIRE(d->members[0].load_milli == 120);
        REQUIRE(d->members[1].incarnation == Incarnation{(1ull << 33) + 4});
        REQUIRE(d->members[1].state == MemberState::left);
    }
    SECTION("task frames") {
        const Task t = golden_task();
        const std::vector<std::pair<std::string, TaskMessage>> messages = {
            {"task_submit", TaskSubmit{5, t.spec}},
            {"task_query", TaskQuery{6, t.spec.id, true, milliseconds(2500)}},
            {"task_reply", TaskReply{7, 503, "full", "busy", 1500, 16, t}},
            {"task_copy", TaskCopy{8, t, true}},
        };
        for (const auto& [name, m] : messages) {
            INFO(name);
            const auto encoded = encode("test", Name("node-1"), m);
            const auto bytes = golden(name, encoded);
            REQUIRE(encoded == bytes);
            auto d = decode_frame(bytes, l);
            REQUIRE(d.ok());
            REQUIRE(d->sender == "node-1");
            REQUIRE(d->message.index() == m.index() + 1);  // PushPull comes first in Frame
        }
        auto reply = std::get<TaskReply>(decode_frame(golden("task_reply", {}), l)->message);
        REQUIRE(reply.request == 7);
        REQUIRE(reply.status == 503);
        REQUIRE(reply.load_milli == 1500);
        REQUIRE(reply.task->spec.key == "user:42");
        REQUIRE(reply.task->state == TaskState::failed);
        REQUIRE(reply.task->exit_code == 3);
        REQUIRE(reply.task->attempts == 2);
        REQUIRE(reply.task->finished == golden_task().finished);
        auto query = std::get<TaskQuery>(decode_frame(golden("task_query", {}), l)->message);
        REQUIRE(query.cancel);
        REQUIRE(query.wait == milliseconds(2500));
        auto rep = std::get<TaskCopy>(decode_frame(golden("task_copy", {}), l)->message);
        REQUIRE(rep.drop);
        REQUIRE(rep.task.owner == "node-2");
    }
}

TEST_CASE("keyring frames survive a round trip, and malformed ones are rejected") {
    KeyBytes k1{}, k2{};
    for (size_t i = 0; i < k1.size(); ++i) {
        k1[i] = static_cast<uint8_t>(i);
        k2[i] = static_cast<uint8_t>(255 - i);
    }
    SECTION("ops") {
        for (auto kind : {KeyringOp::Kind::list, KeyringOp::Kind::install, KeyringOp::Kind::use,
                          KeyringOp::Kind::remove}) {
            KeyringOp op{9, kind, kind == KeyringOp::Kind::list ? KeyBytes{} : k1};
            auto d = decode_frame(encode("test", Name("n1"), KeyringMessage(op)), limits());
            REQUIRE(d.ok());
            const auto& back = std::get<KeyringOp>(d->message);
            REQUIRE(back.request == 9);
            REQUIRE(back.kind == kind);
            REQUIRE(back.key == op.key);
        }
    }
    SECTION("replies") {
        KeyringReply r{10, "", "", {k1, k2}, 1};
        auto d = decode_frame(encode("test", Name("n1"), KeyringMessage(r)), limits());
        REQUIRE(d.ok());
        const auto& back = std::get<KeyringReply>(d->message);
        REQUIRE(back.keys == std::vector<KeyBytes>{k1, k2});
        REQUIRE(back.primary == 1);
        KeyringReply refused{11, "unknown_key", "that key is not installed", {}, 0};
        d = decode_frame(encode("test", Name("n1"), KeyringMessage(refused)), limits());
        REQUIRE(d.ok());
        REQUIRE(std::get<KeyringReply>(d->message).code == "unknown_key");
    }
    SECTION("a primary beyond the keys is rejected") {
        KeyringReply r{10, "", "", {k1}, 1};
        auto d = decode_frame(encode("test", Name("n1"), KeyringMessage(r)), limits());
        REQUIRE_FALSE(d.ok());
        REQUIRE(d.error().reason == DecodeError::bad_field);
    }
}
