// Tasks through the HTTP API on real agents, task services and servers sharing one loop on
// loopback: placement, forwarding, status from any node, cancellation and every bad input.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include "daemon/temp_dir.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "daemon/agent.hpp"
#include "daemon/tasks.hpp"
#include "http/api.hpp"
#include "http/raw_client.hpp"
#include "net/black_hole.hpp"
#include "net/loop.hpp"
#include "wire/codec.hpp"

using namespace chorus;
using chorus::test::RawClient;
using chorus::test::TempDir;
using chorus::test::TestLoop;
using nlohmann::json;

namespace {

struct Member {
    std::unique_ptr<daemon::Agent> agent;
    std::unique_ptr<daemon::TaskService> tasks;
    std::unique_ptr<http::Api> api;
    std::unique_ptr<http::Server> server;
};

// Takes a member's task frames and answers none: the member stays alive in every view, but
// whatever task work is sent to it goes unanswered. It must outlive the cluster handing it frames.
struct Silent : daemon::FrameChannel {
    void on_task_frame(net::FrameConn&, wire::Frame) override {}
    void on_connected(net::FrameConn&) override {}
    void on_closed(uint64_t) override {}
};

struct Reply {
    int status = 0;
    std::string raw;
    json body;
};

// A cluster of one member has nobody to hold a copy: it keeps none, or every task would be
// refused with not_replicated.
daemon::TaskOptions alone(daemon::TaskOptions o = {}) {
    o.task_replicas = 1;
    return o;
}

struct Cluster {
    TestLoop loop;
    std::vector<std::unique_ptr<Member>> members;
    daemon::TaskOptions options;

    explicit Cluster(size_t n, daemon::TaskOptions task_options = {},
                     uint64_t connect_timeout_ms = 0)
        : options(std::move(task_options)) {
        for (size_t i = 0; i < n; ++i) {
            auto m = std::make_unique<Member>();
            Member* raw = m.get();
            daemon::AgentOptions o;
            o.config = Config::local();
            o.identity.name = std::string(1, static_cast<char>('a' + i));
            o.bind = net::Endpoint::parse("127.0.0.1:0").value();
            if (i > 0) o.seeds = {members[0]->agent->bound().str()};
            o.task_limits = options.limits;
            // As the agent sets it (to_agent_options), unless a test wants it otherwise.
            o.frame_limits.connect_timeout_ms =
                connect_timeout_ms != 0 ? connect_timeout_ms : ms_of(options.forward_timeout);
            o.on_event = [raw](const MemberEvent& e) {
                if (raw->tasks) raw->tasks->member_changed(e);
            };
            m->agent = std::move(daemon::Agent::start(loop.get(), std::move(o)).value());
            start_tasks(*m);
            http::Limits limits;
            limits.body_bytes_max = options.limits.payload_bytes_max + 4096;
            m->server = std::move(
                http::Server::listen(loop.get(), net::Endpoint::parse("127.0.0.1:0").value(),
                                     limits, m->agent->node().self().name.str(),
                                     [raw](const http::Request& r, http::Reply reply) {
                                         raw->api->handle(r, reply);
                                     })
                    .value());
            m->api->attach(m->server.get());
            members.push_back(std::move(m));
        }
        REQUIRE(loop.run_until([&] {
            for (auto& m : members)
                if (m->agent->node().members().count(MemberState::alive) != members.size())
                    return false;
            return true;
        }));
    }

    // A member's task service and API, on its own data dir if the cluster has one.
    void start_tasks(Member& m) {
        daemon::TaskOptions mine = options;
        if (!mine.data_dir.empty()) mine.data_dir += "/" + m.agent->node().self().name.str();
        m.tasks = std::make_unique<daemon::TaskService>(
            loop.get(), *m.agent, mine,
            [](const std::string&, std::string, Duration, size_t, auto done) {
                done(Error{"unreachable", "no http in this test"});
            });
        m.api = std::make_unique<http::Api>(loop.get(), *m.agent,
                                            http::Api::Info{"local", "test", {}, m.tasks.get()});
    }
    // The member's process restarting, as its tasks see it: everything in memory is gone and
    // what the journal kept comes back; membership never noticed.
    void restart_tasks(size_t i) {
        members[i]->api.reset();
        members[i]->tasks.reset();
        start_tasks(*members[i]);
        members[i]->api->attach(members[i]->server.get());
    }

    Reply call(size_t at, const std::string& method, const std::string& target,
               const std::string& body = "") {
        return calls_at_once(at, method, target, body, 1)[0];
    }
    // `n` clients send the same request at once; their replies, in client order.
    std::vector<Reply> calls_at_once(size_t at, const std::string& method,
                                     const std::string& target, const std::string& body, size_t n) {
        std::string head =
            method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
        if (!body.empty()) {
            head +=
                "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n";
        }
        std::vector<std::unique_ptr<RawClient>> clients;
        for (size_t i = 0; i < n; ++i) {
            clients.push_back(
                std::make_unique<RawClient>(loop.get(), members[at]->server->local()));
            clients.back()->send(head + "\r\n" + body);
        }
        REQUIRE(loop.run_until(
            [&] {
                return std::all_of(clients.begin(), clients.end(),
                                   [](const auto& c) { return c->closed; });
            },
            20'000));
        std::vector<Reply> out;
        for (const auto& c : clients) {
            Reply r;
            r.raw = c->received;
            r.status = std::stoi(c->received.substr(9, 3));
            r.body = json::parse(chorus::test::last_body(c->received), nullptr, false);
            out.push_back(std::move(r));
        }
        return out;
    }
    Reply submit(size_t at, const json& task, const std::string& query = "") {
        return call(at, "POST", "/v1/tasks" + query, task.dump());
    }
    // The member's task service stops; `silent` takes its frames from now on.
    void silence(size_t i, Silent& silent) {
        members[i]->api.reset();
        members[i]->tasks.reset();
        members[i]->agent->attach(&silent);
    }
    // The member's task service starts again (fresh, as after a restart without a journal).
    void unsilence(size_t i) {
        start_tasks(*members[i]);
        members[i]->api->attach(members[i]->server.get());
    }
    // Up to `count` keys whose candidates are `names`, in that order.
    std::vector<std::string> keys_with(const std::vector<std::string>& names, size_t count) {
        std::vector<std::string> keys;
        for (int k = 0; k < 5000 && keys.size() < count; ++k) {
            const std::string key = "k" + std::to_string(k);
            const Reply lookup = call(0, "GET", "/v1/ring/lookup?key=" + key);
            std::vector<std::string> candidates;
            for (const auto& candidate : lookup.body["candidates"])
                candidates.push_back(candidate["name"]);
            if (candidates == names) keys.push_back(key);
        }
        return keys;
    }
    size_t index_of(const std::string& name) const {
        for (size_t i = 0; i < members.size(); ++i)
            if (members[i] && members[i]->agent->node().self().name == name) return i;
        FAIL("no member " << name);
        return 0;
    }
    // The member holding a copy of task `id`.
    size_t holder_of(const std::string& id) const {
        for (size_t i = 0; i < members.size(); ++i)
            if (members[i] && members[i]->tasks->copy(id) != nullptr) return i;
        FAIL("no member holds a copy of " << id);
        return 0;
    }
    size_t tasks_kept() const {
        size_t n = 0;
        for (auto& m : members)
            if (m) n += m->tasks->board().kept();
        return n;
    }
};

}  // namespace

TEST_CASE("a task posted to one node runs on the owner the ring names, readable from every node") {
    Cluster c(3);
    for (int k = 0; k < 12; ++k) {
        const std::string key = "key-" + std::to_string(k);
        const auto lookup = c.call(0, "GET", "/v1/ring/lookup?key=" + key);
        REQUIRE(lookup.status == 200);
        const std::string owner = lookup.body["owner"];
        // An idle cluster keeps every key on its primary.
        REQUIRE(owner == lookup.body["candidates"][0]["name"]);

        const auto r =
            c.submit(0, {{"key", key}, {"type", "echo"}, {"payload", {{"k", k}}}}, "?wait=5s");
        REQUIRE(r.status == 200);
        REQUIRE(r.body["state"] == "succeeded");
        REQUIRE(r.body["owner"] == owner);
        REQUIRE(r.body["forwarded"] == (owner != "a"));
        REQUIRE(r.body["result"] == json{{"k", k}});
        const std::string id = r.body["id"];
        for (size_t at = 0; at < c.members.size(); ++at) {
            const auto s = c.call(at, "GET", "/v1/tasks/" + id);
            REQUIRE(s.status == 200);
            REQUIRE(s.body["owner"] == owner);
            REQUIRE(s.body["payload"] == json{{"k", k}});
            REQUIRE(s.body["result"] == json{{"k", k}});
        }
        REQUIRE(c.members[c.index_of(owner)]->tasks->board().find(id) != nullptr);
    }
}

TEST_CASE("a task without ?wait is accepted at once and can be followed and cancelled anywhere") {
    Cluster c(3);
    const auto r = c.submit(1, {{"key", "slow"}, {"type", "sleep"}, {"payload", {{"ms", 20000}}}});
    REQUIRE(r.status == 202);
    REQUIRE((r.body["state"] == "running" || r.body["state"] == "queued"));
    const std::string id = r.body["id"];
    const auto waited = c.call(2, "GET", "/v1/tasks/" + id + "?wait=200ms");
    REQUIRE(waited.status == 200);
    REQUIRE(waited.body["state"] == "running");

    const auto cancelled = c.call(0, "DELETE", "/v1/tasks/" + id);
    REQUIRE(cancelled.status == 200);
    REQUIRE(cancelled.body["state"] == "cancelled");
    const auto after = c.call(2, "GET", "/v1/tasks/" + id);
    REQUIRE(after.body["state"] == "cancelled");
    const auto& owner = *c.members[c.index_of(r.body["owner"])];
    REQUIRE(c.loop.run_until([&] { return owner.tasks->board().running() == 0; }));
}

TEST_CASE("a node lists its tasks: running first, then queued, then the finished newest first") {
    daemon::TaskOptions o = alone();
    o.limits.capacity = 1;
    Cluster c(1, o);
    const auto done1 = c.submit(0, {{"key", "k1"}, {"type", "echo"}, {"payload", 1}}, "?wait=5s");
    const auto done2 = c.submit(0, {{"key", "k2"}, {"type", "echo"}, {"payload", 2}}, "?wait=5s");
    REQUIRE(done2.body["state"] == "succeeded");
    const auto slow = c.submit(0, {{"key", "k3"}, {"type", "sleep"}, {"payload", {{"ms", 20000}}}});
    const auto waiting = c.submit(0, {{"key", "k4"}, {"type", "echo"}, {"payload", 4}});
    REQUIRE(waiting.body["state"] == "queued");  // the only slot is taken

    const auto list = c.call(0, "GET", "/v1/tasks");
    REQUIRE(list.status == 200);
    CHECK(list.body["node"] == "a");
    CHECK(list.body["running"] == 1);
    CHECK(list.body["queued"] == 1);
    std::vector<std::string> order;
    for (const auto& t : list.body["tasks"])
        order.push_back(t["key"].get<std::string>() + ":" + t["state"].get<std::string>());
    CHECK(order ==
          std::vector<std::string>{"k3:running", "k4:queued", "k2:succeeded", "k1:succeeded"});
    CHECK_FALSE(list.body["tasks"][0].contains("payload"));  // payloads stay out of lists

    const auto two = c.call(0, "GET", "/v1/tasks?limit=2");
    CHECK(two.body["tasks"].size() == 2);
    for (const char* bad : {"0", "1001", "x", "-1", "2x"}) {
        INFO(bad);
        CHECK(c.call(0, "GET", std::string("/v1/tasks?limit=") + bad).status == 400);
    }
    c.call(0, "DELETE", "/v1/tasks/" + slow.body["id"].get<std::string>());
}

TEST_CASE("a client that hangs up while it waits for a task lets go of the wait, not the task") {
    Cluster c(1, alone());
    const json slow = {
        {"key", "k"}, {"type", "sleep"}, {"payload", {{"ms", 60000}}}, {"id", "sleeper"}};
    const std::string body = slow.dump();
    auto poster = std::make_unique<RawClient>(c.loop.get(), c.members[0]->server->local());
    poster->send(
        "POST /v1/tasks?wait=5m HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body);
    daemon::TaskService& tasks = *c.members[0]->tasks;
    REQUIRE(c.loop.run_until([&] { return tasks.waiting() == 1 && tasks.board().running() == 1; }));
    const auto again = c.submit(0, slow);  // the same named task, asked without a wait
    REQUIRE(again.status == 202);
    const std::string id = again.body["id"];
    auto reader = std::make_unique<RawClient>(c.loop.get(), c.members[0]->server->local());
    reader->send("GET /v1/tasks/" + id + "?wait=5m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(c.loop.run_until([&] { return tasks.waiting() == 2; }));
    // Both go: their waits end now, not in five minutes; the task they asked for runs on.
    poster.reset();
    REQUIRE(c.loop.run_until([&] { return tasks.waiting() == 1; }));
    reader.reset();
    REQUIRE(c.loop.run_until([&] { return tasks.waiting() == 0; }));
    REQUIRE(tasks.board().running() == 1);
    REQUIRE(c.call(0, "GET", "/v1/tasks/" + id).body["state"] == "running");
}

TEST_CASE("a full owner's keys go to the next candidate, and 503 once every candidate is full") {
    daemon::TaskOptions o;
    o.limits.capacity = 1;
    o.limits.queue_max = 0;
    Cluster c(3, o);
    const json slow = {{"key", "hot"}, {"type", "sleep"}, {"payload", {{"ms", 20000}}}};
    std::set<std::string> owners;
    for (int i = 0; i < 3; ++i) {
        const auto r = c.submit(0, slow);
        REQUIRE(r.status == 202);
        owners.insert(r.body["owner"].get<std::string>());
    }
    REQUIRE(owners.size() == 3);  // each candidate took one
    const auto refused = c.submit(0, slow);
    REQUIRE(refused.status == 503);
    REQUIRE(refused.body["error"]["code"] == "all_refused");
    REQUIRE_THAT(refused.raw, Catch::Contains("Retry-After: 1"));
}

TEST_CASE("bad task input gets the right status and a message, and creates nothing") {
    daemon::TaskOptions o;
    o.limits.payload_bytes_max = 1000;
    o.limits.key_bytes_max = 16;
    Cluster c(1, alone(o));
    struct Case {
        std::string body;
        int status;
        const char* code;
    };
    const std::vector<Case> cases = {
        {R"({"key": "a", "type": )", 400, "bad_json"},
        {R"([1, 2])", 400, "bad_request"},
        {R"({"type": "echo"})", 400, "missing_key"},
        {R"({"key": 7, "type": "echo"})", 400, "bad_key"},
        {R"({"key": "", "type": "echo"})", 400, "missing_key"},
        {R"({"key": "0123456789abcdefg", "type": "echo"})", 400, "key_too_long"},
        {R"({"key": "a\nb", "type": "echo"})", 400, "bad_key"},
        {R"({"key": "a\u0000", "type": "echo"})", 400, "bad_key"},
        {R"({"key": "a", "type": "echo", "payload": 1e999})", 400, "bad_json"},
        {R"({"key": "a", "type": "echo", "payload": )" + std::string(100, '[') + "}", 400,
         "too_deep"},
        {R"({"key": "a"})", 400, "missing_type"},
        {R"({"key": "a", "type": ["echo"]})", 400, "bad_type"},
        {R"({"key": "a", "type": "dance"})", 422, "unknown_type"},
        {R"({"key": "a", "type": "echo", "paylod": 1})", 400, "unknown_field"},
        {R"({"key": "a", "type": "echo", "timeout_ms": -5})", 400, "bad_timeout"},
        {R"({"key": "a", "type": "echo", "timeout_ms": 99999999999})", 400, "bad_timeout"},
        {R"({"key": "a", "type": "echo", "id": "a/b"})", 400, "bad_id"},
        {R"({"key": "a", "type": "echo", "payload": ")" + std::string(1000, 'x') + R"("})", 413,
         "payload_too_large"},
        {R"({"key": "a", "type": "echo", "payload": ")" + std::string(10000, 'x') + R"("})", 413,
         "body_too_large"},
    };
    for (const Case& k : cases) {
        INFO(k.body.substr(0, 80));
        const auto r = c.call(0, "POST", "/v1/tasks", k.body);
        REQUIRE(r.status == k.status);
        REQUIRE(r.body["error"]["code"] == k.code);
        REQUIRE_FALSE(r.body["error"]["message"].get<std::string>().empty());
    }
    REQUIRE(c.tasks_kept() == 0);

    REQUIRE(c.call(0, "POST", "/v1/tasks").body["error"]["code"] == "bad_request");
    REQUIRE(c.call(0, "POST", "/v1/tasks?wait=soon", R"({"key":"a","type":"echo"})").status == 400);
    for (const char* wait : {"inf", "nan", "-1s", "1e999", "infs"}) {
        INFO(wait);
        const auto r = c.call(0, "POST", fmt::format("/v1/tasks?wait={}", wait),
                              R"({"key":"a","type":"echo"})");
        REQUIRE(r.status == 400);
        REQUIRE(r.body["error"]["code"] == "bad_wait");
    }
    REQUIRE(c.call(0, "GET", "/v1/members?index=99&wait=nan").body["error"]["code"] == "bad_wait");
    REQUIRE(c.call(0, "PUT", "/v1/tasks", R"({})").status == 405);
    REQUIRE(c.call(0, "POST", "/v1/tasks/abc", R"({})").status == 405);
    REQUIRE(c.call(0, "GET", "/v1/tasks/0123456789abcdef-nope").status == 404);
    REQUIRE(c.call(0, "GET", "/v1/tasks/not-an-id").body["error"]["code"] == "unknown_task");
    REQUIRE(c.call(0, "DELETE", "/v1/tasks/0123456789abcdef-nope").status == 404);
    REQUIRE(c.call(0, "GET", "/v1/ring/lookup").body["error"]["code"] == "missing_key");
    REQUIRE(c.tasks_kept() == 0);
}

TEST_CASE("a client's name for a task makes the id, resent it is the same task, changed a 409") {
    Cluster c(3);
    const json t = {
        {"key", "k1"}, {"type", "sleep"}, {"payload", {{"ms", 300}}}, {"id", "order-7"}};
    const auto first = c.submit(0, t);
    REQUIRE(first.status == 202);
    const std::string id = first.body["id"];
    REQUIRE_THAT(id, Catch::EndsWith("-order-7"));
    // A retry through any node answers with the task it already has, and nothing runs twice.
    for (size_t at = 0; at < 3; ++at) {
        const auto again = c.submit(at, t, "?wait=5s");
        REQUIRE(again.status == 200);
        REQUIRE(again.body["id"] == id);
        REQUIRE(again.body["state"] == "succeeded");
        REQUIRE(again.body["attempts"] == 1);
    }
    size_t copies = 0;
    for (auto& m : c.members)
        copies += m->tasks->board().find(id) != nullptr ? 1 : 0;
    REQUIRE(copies == 1);
    json changed = t;
    changed["payload"] = {{"ms", 301}};
    const auto conflict = c.submit(2, changed);
    REQUIRE(conflict.status == 409);
    REQUIRE(conflict.body["error"]["code"] == "task_conflict");
}

TEST_CASE(
    "a node restarted on its data dir keeps its results and runs its unfinished tasks again") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    std::string done_id, running_id;
    {
        Cluster c(1, alone(o));
        const auto done = c.submit(0, {{"key", "a"}, {"type", "echo"}, {"payload", 7}}, "?wait=5s");
        REQUIRE(done.body["state"] == "succeeded");
        done_id = done.body["id"];
        const auto running =
            c.submit(0, {{"key", "b"}, {"type", "sleep"}, {"payload", {{"ms", 60000}}}});
        REQUIRE(running.status == 202);
        running_id = running.body["id"];
        REQUIRE(c.loop.run_until([&] { return c.members[0]->tasks->board().running() == 1; }));
        REQUIRE(c.loop.run_until([&] { return !c.members[0]->tasks->journal_busy(); }));
    }  // the node stops without a word: its process is gone
    Cluster c(1, alone(o));
    REQUIRE(c.members[0]->tasks->stats().recovered == 2);
    const auto done = c.call(0, "GET", "/v1/tasks/" + done_id);
    REQUIRE(done.body["state"] == "succeeded");
    REQUIRE(done.body["result"] == 7);
    const auto running = c.call(0, "GET", "/v1/tasks/" + running_id);
    REQUIRE(running.body["state"] == "running");
    REQUIRE(running.body["attempts"] == 2);
}

TEST_CASE("a full journal refuses new tasks with 503, and every task it acknowledged is stored") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    std::vector<std::string> acknowledged;
    {
        Cluster c(1, alone(o));
        REQUIRE(c.members[0]->tasks->journal()->limit_pages(12).ok());
        int refused = 0;
        for (int i = 0; i < 40 && refused == 0; ++i) {
            const auto r =
                c.submit(0, {{"key", "k" + std::to_string(i)},
                             {"type", "sleep"},
                             {"payload", {{"ms", 60000}, {"pad", std::string(3000, 'x')}}}});
            if (r.status == 202) {
                acknowledged.push_back(r.body["id"]);
            } else {
                REQUIRE(r.status == 503);
                // The only candidate refused: the entry node says so, and why.
                REQUIRE(r.body["error"]["code"] == "all_refused");
                REQUIRE_THAT(r.body["error"]["message"].get<std::string>(),
                             Catch::Contains("journal") && Catch::Contains("full"));
                ++refused;
            }
        }
        REQUIRE(refused == 1);
        REQUIRE_FALSE(acknowledged.empty());
        // The failure shows: health is 503 with the reason, /v1/self and /metrics say so, and
        // the node tells its peers it takes no tasks.
        const auto health = c.call(0, "GET", "/v1/health");
        REQUIRE(health.status == 503);
        REQUIRE(health.body["error"]["code"] == "journal_failing");
        REQUIRE_THAT(health.body["error"]["message"].get<std::string>(), Catch::Contains("full"));
        REQUIRE(c.call(0, "GET", "/v1/self").body["tasks"]["journal"]["state"] == "failing");
        REQUIRE_THAT(c.call(0, "GET", "/metrics").raw,
                     Catch::Contains("\nchorus_journal_failing 1\n"));
        REQUIRE(c.members[0]->agent->node().self().load_milli == kLoadRefusing);
        // Room again: the node finds out by itself, at its next try, and takes tasks again.
        REQUIRE(c.members[0]->tasks->journal()->limit_pages(100000).ok());
        Reply r;
        REQUIRE(c.loop.run_until(
            [&] {
                r = c.submit(0, {{"key", "after"}, {"type", "echo"}});
                return r.status == 202 || r.status == 200;
            },
            10'000));
        acknowledged.push_back(r.body["id"]);
        REQUIRE(c.call(0, "GET", "/v1/health").status == 200);
        REQUIRE(c.call(0, "GET", "/v1/self").body["tasks"]["journal"]["state"] == "ok");
        REQUIRE(c.members[0]->agent->node().self().load_milli != kLoadRefusing);
        REQUIRE(c.loop.run_until([&] { return !c.members[0]->tasks->journal_busy(); }));
    }
    auto j = daemon::Journal::open(d.path + "/a");
    REQUIRE(j.ok());
    std::set<std::string> stored;
    const auto tasks = (*j)->load();  // held: a range-for over .value() of a temporary dangles
    for (const Task& t : tasks.value())
        stored.insert(t.spec.id);
    for (const auto& id : acknowledged) {
        INFO(id);
        REQUIRE(stored.contains(id));
    }
}

TEST_CASE("a task its owner could not store is dropped from the member holding its copy") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    o.candidates = 1;  // the owner is the only candidate: its refusal is the answer
    Cluster c(2, o);
    REQUIRE(c.members[0]->tasks->journal()->limit_pages(12).ok());
    int refused = 0;
    for (int i = 0; i < 200 && refused == 0; ++i) {
        const std::string key = "k" + std::to_string(i);
        if (c.call(0, "GET", "/v1/ring/lookup?key=" + key).body["owner"] != "a") continue;
        const auto r = c.submit(0, {{"key", key},
                                    {"type", "sleep"},
                                    {"payload", {{"ms", 60000}, {"pad", std::string(3000, 'x')}}}});
        if (r.status == 503) ++refused;
    }
    REQUIRE(refused == 1);
    // The copy reached b beside the failed commit, and b forgot it: b holds copies of the
    // acknowledged tasks only, so a's death would not run the refused one.
    REQUIRE(c.loop.run_until([&] { return c.members[1]->tasks->stats().dropped == 1; }));
    REQUIRE(c.members[1]->tasks->copies().size() ==
            c.members[0]->tasks->board().running() + c.members[0]->tasks->board().queued());
}

TEST_CASE("a named task sent again before it is stored hears what the first one hears") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    Cluster c(1, alone(o));
    const json task = {{"id", "twice"}, {"key", "k"}, {"type", "echo"}, {"payload", 1}};
    // Stored: both hear of the one task (202 while it runs, 200 once it has finished).
    auto replies = c.calls_at_once(0, "POST", "/v1/tasks", task.dump(), 2);
    for (const auto& r : replies) {
        REQUIRE((r.status == 202 || r.status == 200));
        REQUIRE(r.body["id"] == replies[0].body["id"]);
    }
    REQUIRE(c.members[0]->tasks->board().stats().accepted == 1);

    // Not stored (the journal is full): both are refused; neither hears 200 for a task that is
    // in no journal.
    REQUIRE(c.members[0]->tasks->journal()->limit_pages(1).ok());  // no page more
    json big = task;
    big["id"] = "big";
    big["payload"] = std::string(20'000, 'x');
    replies = c.calls_at_once(0, "POST", "/v1/tasks", big.dump(), 2);
    REQUIRE(replies[0].status == 503);
    REQUIRE(replies[1].status == 503);
    REQUIRE(c.members[0]->tasks->board().stats().accepted == 1);
}

TEST_CASE("a corrupt journal: the node says why, refuses tasks with 503, and serves the rest") {
    TempDir d;
    std::filesystem::create_directories(d.path + "/a");
    {
        std::ofstream f(d.path + "/a/tasks.db");
        f << std::string(8192, 'Z');
    }
    daemon::TaskOptions o;
    o.data_dir = d.path;
    Cluster c(1, alone(o));
    const auto r = c.submit(0, {{"key", "k"}, {"type", "echo"}});
    REQUIRE(r.status == 503);
    REQUIRE(r.body["error"]["code"] == "all_refused");
    REQUIRE_THAT(r.body["error"]["message"].get<std::string>(), Catch::Contains("move it away"));
    const auto self = c.call(0, "GET", "/v1/self");
    REQUIRE(self.body["tasks"]["journal"]["state"] == "unavailable");
    REQUIRE(c.call(0, "GET", "/v1/members").status == 200);
    REQUIRE(c.tasks_kept() == 0);
}

TEST_CASE("the ring endpoint shows every member's share and a checksum equal on every node") {
    Cluster c(3);
    const auto a = c.call(0, "GET", "/v1/ring");
    const auto b = c.call(2, "GET", "/v1/ring");
    REQUIRE(a.status == 200);
    REQUIRE(a.body["checksum"] == b.body["checksum"]);
    REQUIRE(a.body["members"].size() == 3);
    double total = 0;
    for (const auto& m : a.body["members"])
        total += m["share"].get<double>();
    REQUIRE(total == Approx(1.0));
    const auto metrics = c.call(0, "GET", "/metrics");
    REQUIRE_THAT(metrics.raw, Catch::Contains("chorus_tasks_total{outcome=\"accepted\"}"));
}

TEST_CASE("an owner that does not answer in time is passed over for the next candidate") {
    Silent silent;  // outlives the cluster
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(300);
    Cluster c(3, o);
    std::string key;
    for (int k = 0; k < 100 && key.empty(); ++k) {
        const std::string candidate = "t" + std::to_string(k);
        if (c.call(0, "GET", "/v1/ring/lookup?key=" + candidate).body["owner"] == "b") {
            key = candidate;
        }
    }
    REQUIRE_FALSE(key.empty());
    c.silence(1, silent);  // b stays a live member, but no task frame sent to it is answered
    const auto r = c.submit(0, {{"key", key}, {"type", "echo"}});
    REQUIRE((r.status == 202 || r.status == 200));  // 200: it ran before the answer went out
    REQUIRE(r.body["owner"] != "b");
    REQUIRE(c.members[0]->tasks->stats().forward_timeouts == 1);
    REQUIRE(c.members[0]->tasks->stats().retries == 1);
}

TEST_CASE("a copy not stored in time goes to the next member, and the task stays on one owner") {
    Silent silent;  // outlives the cluster
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(600);
    o.copy_timeout = milliseconds(100);
    Cluster c(3, o);
    // A key owned by b whose copy goes to c, the member after b in its preference list.
    const auto keys = c.keys_with({"b", "c", "a"}, 1);
    REQUIRE(keys.size() == 1);
    c.silence(2, silent);
    const auto r = c.submit(0, {{"key", keys[0]}, {"type", "sleep"}, {"payload", {{"ms", 3000}}}});
    INFO(r.raw);
    REQUIRE(r.status == 202);
    // b answered before a gave up on it: a never tried another owner, so none other has it.
    REQUIRE(r.body["owner"] == "b");
    const daemon::TaskServiceStats entry = c.members[0]->tasks->stats();
    REQUIRE(entry.forward_timeouts == 0);
    REQUIRE(entry.retries == 0);
    // c never answered the copy: after copy_timeout it went to a, the next member of the key.
    const CopyTrackerStats& copies = c.members[1]->tasks->tracker().stats();
    REQUIRE(copies.timeouts == 1);
    REQUIRE(copies.stored == 1);
    REQUIRE(r.body["replicas"] == 2);
    const std::string id = r.body["id"];
    REQUIRE(c.members[0]->tasks->board().find(id) == nullptr);
    REQUIRE(c.members[0]->tasks->copy(id) != nullptr);
    REQUIRE(c.members[1]->tasks->under_replicated() == 0);
}

TEST_CASE("a task no member can copy in time is refused with not_replicated, and never runs") {
    Silent silent_b, silent_c;  // outlive the cluster
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(600);
    o.copy_timeout = milliseconds(100);
    o.candidates = 1;  // a is the only owner to try; b and c may hold copies
    Cluster c(3, o);
    const auto keys = c.keys_with({"a"}, 1);
    REQUIRE(keys.size() == 1);
    c.silence(1, silent_b);
    c.silence(2, silent_c);
    const auto r = c.submit(0, {{"key", keys[0]}, {"type", "echo"}});
    INFO(r.raw);
    REQUIRE(r.status == 503);
    REQUIRE(r.body["error"]["code"] == "not_replicated");
    REQUIRE(r.raw.find("Retry-After: ") != std::string::npos);
    const daemon::TaskService& a = *c.members[0]->tasks;
    REQUIRE(a.board().kept() == 0);  // nothing ran, nothing is kept
    REQUIRE(a.board().stats().accepted == 0);
    REQUIRE(a.tracker().size() == 0);
    REQUIRE(a.stats().not_replicated >= 1);
}

TEST_CASE("min_replicas 1 acknowledges a task alone, says so, and copies it once a member can") {
    Silent silent_b;  // outlives the cluster
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(600);
    o.copy_timeout = milliseconds(100);
    o.min_replicas = 1;
    Cluster c(2, o);
    const auto keys = c.keys_with({"a", "b"}, 1);
    REQUIRE(keys.size() == 1);
    c.silence(1, silent_b);
    const auto r = c.submit(0, {{"key", keys[0]}, {"type", "sleep"}, {"payload", {{"ms", 60000}}}});
    INFO(r.raw);
    REQUIRE(r.status == 202);
    REQUIRE(r.body["replicas"] == 1);
    const daemon::TaskService& a = *c.members[0]->tasks;
    REQUIRE(a.under_replicated() == 1);
    REQUIRE(a.tracker().stats().degraded == 1);
    // b answers again: the next repair round copies the task there.
    c.unsilence(1);
    REQUIRE(c.loop.run_until([&] { return a.under_replicated() == 0; }, 10'000));
    REQUIRE(c.members[1]->tasks->copy(r.body["id"].get<std::string>()) != nullptr);
}

TEST_CASE("with no alive owner for a key the answer is 503 saying why") {
    Cluster c(1, alone());
    bool left = false;
    c.members[0]->agent->leave(seconds(1), [&] { left = true; });
    REQUIRE(c.loop.run_until([&] { return left; }));
    c.members[0]->tasks->membership_changed();
    const auto r = c.submit(0, {{"key", "k"}, {"type", "echo"}});
    REQUIRE(r.status == 503);
    REQUIRE(r.body["error"]["code"] == "no_owner");
    REQUIRE_THAT(r.body["error"]["message"].get<std::string>(), Catch::Contains("no alive member"));
    REQUIRE(c.tasks_kept() == 0);
}

TEST_CASE(
    "when an owner dies, the holder of its copy runs its unfinished tasks and keeps results") {
    Cluster c(3);
    // A finished task and a running one, both owned by a member other than a.
    std::string owner, finished_id, running_id;
    int finished_k = -1;
    for (int k = 0; k < 50 && owner.empty(); ++k) {
        const auto l = c.call(0, "GET", "/v1/ring/lookup?key=k" + std::to_string(k));
        if (l.body["owner"] != "a") {
            const auto r =
                c.submit(0, {{"key", "k" + std::to_string(k)}, {"type", "echo"}, {"payload", k}},
                         "?wait=5s");
            REQUIRE(r.body["state"] == "succeeded");
            owner = r.body["owner"];
            finished_id = r.body["id"];
            finished_k = k;
            const auto s = c.submit(
                0,
                {{"key", "k" + std::to_string(k)}, {"type", "sleep"}, {"payload", {{"ms", 1500}}}});
            REQUIRE(s.status == 202);
            REQUIRE(s.body["owner"] == owner);
            running_id = s.body["id"];
        }
    }
    REQUIRE_FALSE(owner.empty());
    const size_t dead = c.index_of(owner);
    // Acknowledged means copied: some other member holds both tasks.
    size_t copies = 0;
    for (auto& m : c.members)
        if (m && m->agent->node().self().name != owner) copies += m->tasks->copies().size();
    REQUIRE(copies >= 2);
    c.members[dead].reset();  // gone without a word

    // Some survivor takes the running task over and runs it to the end.
    REQUIRE(c.loop.run_until(
        [&] {
            const auto r = c.call(0, "GET", "/v1/tasks/" + running_id);
            return r.status == 200 && r.body["state"] == "succeeded";
        },
        30'000));
    const auto r = c.call(0, "GET", "/v1/tasks/" + running_id);
    REQUIRE(r.body["owner"] != owner);
    REQUIRE(r.body["attempts"] == 2);
    const auto f = c.call(0, "GET", "/v1/tasks/" + finished_id);
    REQUIRE(f.status == 200);
    REQUIRE(f.body["state"] == "succeeded");
    REQUIRE(f.body["result"] == finished_k);  // the copy learned the result before the owner died
}

TEST_CASE("when the holder of a copy dies, the owner copies its unfinished task again") {
    Cluster c(3);
    const auto r =
        c.submit(0, {{"key", "recopy"}, {"type", "sleep"}, {"payload", {{"ms", 60'000}}}});
    REQUIRE(r.status == 202);
    const std::string id = r.body["id"];
    const size_t owner = c.index_of(r.body["owner"]);
    const size_t holder = c.holder_of(id);
    REQUIRE(holder != owner);
    const size_t third = 3 - owner - holder;
    REQUIRE(c.members[third]->tasks->copy(id) == nullptr);

    c.members[holder].reset();  // the copy goes with it
    // Once the owner learns the holder is dead, the third member gets a copy.
    const daemon::TaskService& tasks = *c.members[owner]->tasks;
    REQUIRE(c.loop.run_until(
        [&] {
            return c.members[third]->tasks->copy(id) != nullptr && tasks.under_replicated() == 0;
        },
        30'000));
    REQUIRE(tasks.tracker().stats().repaired == 1);
    REQUIRE(*tasks.tracker().holders(id) ==
            std::vector<Name>{c.members[third]->agent->node().self().name});

    // So the task outlives its owner too: the third member takes it over.
    c.members[owner].reset();
    REQUIRE(c.loop.run_until(
        [&] {
            const Task* t = c.members[third]->tasks->board().find(id);
            return t != nullptr && t->state == TaskState::running;
        },
        30'000));
    const Task* t = c.members[third]->tasks->board().find(id);
    REQUIRE(t->attempts == 2);
    REQUIRE(c.call(third, "DELETE", "/v1/tasks/" + id).status == 200);
}

TEST_CASE("a finished result outlives its owner and then the holder that kept it") {
    Cluster c(3);
    const auto r = c.submit(0, {{"key", "kept"}, {"type", "echo"}, {"payload", 41}}, "?wait=5s");
    REQUIRE(r.body["state"] == "succeeded");
    const std::string id = r.body["id"];
    const size_t owner = c.index_of(r.body["owner"]);
    const size_t holder = c.holder_of(id);
    REQUIRE(holder != owner);
    const size_t third = 3 - owner - holder;

    // The owner is lost: the holder keeps the result as its own and has it copied again, so
    // two members keep it, as when the task was acknowledged.
    c.members[owner].reset();
    const daemon::TaskService& kept = *c.members[holder]->tasks;
    REQUIRE(c.loop.run_until(
        [&] {
            const Task* t = kept.board().find(id);
            return t != nullptr && c.members[third]->tasks->copy(id) != nullptr &&
                   kept.under_replicated() == 0;
        },
        30'000));
    REQUIRE(kept.copy(id) == nullptr);
    REQUIRE(kept.stats().promoted == 0);  // nothing ran again

    // Then that holder is lost too: the third member still has the result.
    c.members[holder].reset();
    REQUIRE(c.loop.run_until(
        [&] {
            const auto f = c.call(third, "GET", "/v1/tasks/" + id);
            return f.status == 200 && f.body["state"] == "succeeded" && f.body["result"] == 41;
        },
        30'000));
}

// Where a task's copy is, is kept in memory only: an owner that restarts runs its unfinished
// tasks again and copies them again, and the holders of copies ask the owner of any they hold
// unfinished how its task stands.
TEST_CASE("a copy whose owner restarted learns how the task stands") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    o.copy_check = milliseconds(100);
    Cluster c(3, o);
    const auto r = c.submit(0, {{"key", "stale"}, {"type", "sleep"}, {"payload", {{"ms", 500}}}});
    REQUIRE(r.status == 202);
    const std::string id = r.body["id"];
    const size_t owner = c.index_of(r.body["owner"]);
    const size_t holder = c.holder_of(id);
    REQUIRE(holder != owner);
    daemon::TaskService* held = nullptr;

    SECTION("on its journal: the copy learns the outcome of the run after the restart") {
        c.restart_tasks(owner);  // the task runs again from the journal, and is copied again
        const daemon::TaskService& restarted = *c.members[owner]->tasks;
        REQUIRE(restarted.under_replicated() <= 1);
        REQUIRE(c.loop.run_until(
            [&] {
                const Task* t = c.members[owner]->tasks->board().find(id);
                return t != nullptr && t->state == TaskState::succeeded;
            },
            10'000));
        // Asked, the owner tells the copy how the task ended: it is never run a second time.
        held = c.members[holder]->tasks.get();
        REQUIRE(c.loop.run_until(
            [&] {
                const Task* copy = held->copy(id);
                return copy != nullptr && copy->state == TaskState::succeeded;
            },
            10'000));
        // Told by the owner, which copies the task (and then its result) again, or by asking
        // it (copy_check); the result is kept on two members again.
        REQUIRE(c.loop.run_until([&] { return restarted.under_replicated() == 0; }, 10'000));
        REQUIRE_THAT(c.call(owner, "GET", "/metrics").raw,
                     Catch::Contains("\nchorus_tasks_under_replicated 0\n"));
        REQUIRE(held->stats().promoted == 0);
    }
    SECTION("on an empty data dir (a replaced disk): the holder of the copy runs the task") {
        c.members[owner]->api.reset();
        c.members[owner]->tasks.reset();
        std::filesystem::remove_all(d.path + "/" +
                                    c.members[owner]->agent->node().self().name.str());
        c.start_tasks(*c.members[owner]);
        REQUIRE(c.members[owner]->tasks->board().find(id) == nullptr);
        held = c.members[holder]->tasks.get();
        REQUIRE(c.loop.run_until(
            [&] {
                const Task* t = held->board().find(id);
                return t != nullptr && t->state == TaskState::succeeded;
            },
            10'000));
        REQUIRE(held->copy(id) == nullptr);
        REQUIRE(held->stats().promoted == 1);
        REQUIRE(held->stats().caught_up == 0);
    }
}

TEST_CASE("a leaving node hands its queued tasks to other candidates, and none runs twice") {
    daemon::TaskOptions o;
    o.limits.capacity = 1;
    Cluster c(3, o);
    // Six slow tasks for one key on three one-slot nodes: each candidate runs one and queues
    // the rest, wherever the router put them.
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) {
        const auto r =
            c.submit(0, {{"key", "same"}, {"type", "sleep"}, {"payload", {{"ms", 400}}}});
        REQUIRE(r.status == 202);
        ids.push_back(r.body["id"]);
    }
    // The node with the most queued tasks leaves.
    size_t leaving = 0;
    for (size_t i = 1; i < c.members.size(); ++i)
        if (c.members[i]->tasks->board().queued() > c.members[leaving]->tasks->board().queued())
            leaving = i;
    const size_t queued = c.members[leaving]->tasks->board().queued();
    REQUIRE(queued > 0);
    std::optional<std::pair<size_t, size_t>> outcome;
    c.members[leaving]->tasks->hand_off(
        seconds(5), [&](size_t handed, size_t kept) { outcome.emplace(handed, kept); });
    REQUIRE(c.loop.run_until([&] { return outcome.has_value(); }));
    REQUIRE(outcome->first == queued);
    REQUIRE(outcome->second == 0);
    // The running task was let finish before the node left, so its copy knows the outcome.
    REQUIRE(c.members[leaving]->tasks->board().running() == 0);
    REQUIRE(c.members[leaving]->tasks->board().queued() == 0);
    bool left = false;
    c.members[leaving]->agent->leave(seconds(2), [&] { left = true; });
    REQUIRE(c.loop.run_until([&] { return left; }));
    c.members[leaving].reset();

    // Every task finishes, each ran once, and each is on exactly one board.
    const size_t other = leaving == 0 ? 1 : 0;
    for (const auto& id : ids) {
        INFO(id);
        REQUIRE(c.loop.run_until(
            [&] {
                const auto r = c.call(other, "GET", "/v1/tasks/" + id);
                return r.status == 200 && r.body["state"] == "succeeded";
            },
            30'000));
        const auto r = c.call(other, "GET", "/v1/tasks/" + id);
        INFO(r.body.dump());
        REQUIRE(r.body["attempts"] == 1);
    }
}

TEST_CASE("a cancelled task's copy hears of it, and is not run when the owner dies") {
    daemon::TaskOptions o;
    o.limits.capacity = 1;
    Cluster c(3, o);
    std::string key;
    for (int k = 0; k < 50 && key.empty(); ++k) {
        const std::string candidate = "c" + std::to_string(k);
        if (c.call(0, "GET", "/v1/ring/lookup?key=" + candidate).body["owner"] != "a") {
            key = candidate;
        }
    }
    const json slow = {{"key", key}, {"type", "sleep"}, {"payload", {{"ms", 60000}}}};
    // One running task on each of the three candidates, then one queued on the primary.
    std::map<std::string, std::string> running;  // owner -> its running task
    for (int i = 0; i < 3; ++i) {
        const auto r = c.submit(0, slow);
        REQUIRE(r.status == 202);
        running[r.body["owner"].get<std::string>()] = r.body["id"].get<std::string>();
    }
    const auto queued = c.submit(0, slow);
    REQUIRE(queued.status == 202);
    REQUIRE(queued.body["state"] == "queued");
    const std::string id = queued.body["id"];
    const std::string owner = queued.body["owner"];
    REQUIRE(running.contains(owner));
    REQUIRE(c.call(0, "DELETE", "/v1/tasks/" + id).body["state"] == "cancelled");
    const size_t dead = c.index_of(owner);
    // The copy's holder hears of the cancellation.
    size_t holder = dead;
    REQUIRE(c.loop.run_until([&] {
        for (size_t i = 0; i < c.members.size(); ++i) {
            const Task* copy = i == dead ? nullptr : c.members[i]->tasks->copy(id);
            if (copy != nullptr && copy->state == TaskState::cancelled) holder = i;
        }
        return holder != dead;
    }));
    // The owner's running task has its copy there too: a copy's place depends only on the
    // key and the owner.
    REQUIRE(c.members[holder]->tasks->copy(running[owner]) != nullptr);
    c.members[dead].reset();
    const size_t other = dead == 0 ? 1 : 0;
    // Once membership marks the owner dead, its running task is taken over, but the
    // cancelled one stays cancelled and runs nowhere. The holder takes over every unfinished
    // copy of the dead owner's at once, so once the running task is its own, the cancelled
    // one would have been too.
    REQUIRE(c.loop.run_until(
        [&] {
            const chorus::Member* m = c.members[other]->agent->node().members().find(owner);
            return m != nullptr && is_gone(m->state) &&
                   c.members[holder]->tasks->board().find(running[owner]) != nullptr;
        },
        30'000));
    for (auto& m : c.members) {
        if (!m) continue;
        const Task* t = m->tasks->board().find(id);
        REQUIRE((t == nullptr || t->state == TaskState::cancelled));
    }
    REQUIRE(c.call(other, "GET", "/v1/tasks/" + id).body["state"] == "cancelled");
}

TEST_CASE("a dead owner's copies beyond the holder's capacity wait for room or go elsewhere") {
    daemon::TaskOptions o;
    o.limits.capacity = 1;
    o.limits.queue_max = 1;
    o.copy_check = milliseconds(300);  // orphans are offered around at each check too
    Cluster c(3, o);
    // Keys whose preference list is a, c, b: the copies of b's tasks are on a (the member after
    // b in the list, wrapping around).
    const auto keys = c.keys_with({"a", "c", "b"}, 6);
    REQUIRE(keys.size() == 6);
    // Either a's own tasks end first and a takes b's over, or c's are cancelled first and c
    // takes them.
    const bool c_has_room = GENERATE(false, true);
    INFO("c frees room first: " << c_has_room);
    // Six tasks fill all three members (two places each), in ring order as the loads tie.
    const std::map<std::string, int> sleep_ms = {
        {"a", c_has_room ? 20'000 : 3000}, {"b", 1500}, {"c", 20'000}};
    std::vector<std::string> of_b, others;
    for (size_t i = 0; i < 6; ++i) {
        const std::string owner = std::string(1, "acb"[i % 3]);
        const auto r = c.submit(
            0, {{"key", keys[i]}, {"type", "sleep"}, {"payload", {{"ms", sleep_ms.at(owner)}}}});
        REQUIRE(r.status == 202);
        REQUIRE(r.body["owner"] == owner);
        (owner == "b" ? of_b : others).push_back(r.body["id"]);
    }
    for (const auto& id : of_b)
        REQUIRE(c.members[0]->tasks->copy(id) != nullptr);
    c.members[1].reset();  // b is gone without a word, its tasks unfinished
    // a has no room for them, and neither has c: both wait on a as orphans.
    REQUIRE(c.loop.run_until([&] { return c.members[0]->tasks->orphans() == 2; }, 20'000));
    if (c_has_room) {
        for (const auto& id : others) {
            if (c.call(0, "GET", "/v1/tasks/" + id).body["owner"] == "c")
                REQUIRE(c.call(0, "DELETE", "/v1/tasks/" + id).status == 200);
        }
    }

    // a never runs past its limits, and every one of b's tasks runs to the end somewhere.
    const auto& board = c.members[0]->tasks->board();
    size_t most = 0;
    REQUIRE(c.loop.run_until(
        [&] {
            most = std::max(most, board.running() + board.queued());
            for (const auto& id : of_b) {
                const auto r = c.call(0, "GET", "/v1/tasks/" + id);
                if (r.status != 200 || r.body["state"] != "succeeded") return false;
            }
            return true;
        },
        30'000));
    REQUIRE(most <= 2);
    const auto& stats = c.members[0]->tasks->stats();
    REQUIRE(c.members[0]->tasks->orphans() == 0);
    for (const auto& id : of_b) {
        const auto r = c.call(0, "GET", "/v1/tasks/" + id);
        // Placed on c when it had room; else taken over by a once a's own tasks freed room.
        REQUIRE(r.body["owner"] == (c_has_room ? "c" : "a"));
    }
    REQUIRE(stats.orphans_placed == (c_has_room ? 2u : 0u));
}

TEST_CASE("a node whose journal fails is passed over by its peers until it commits again") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    o.candidates = 2;
    // Two members, one refusing: b's tasks can have no copy while a fails, and are taken
    // alone rather than refused.
    o.min_replicas = 1;
    Cluster c(2, o);
    std::vector<std::string> keys;  // keys whose primary is a
    for (int k = 0; k < 200 && keys.size() < 5; ++k) {
        const std::string key = "k" + std::to_string(k);
        if (c.call(1, "GET", "/v1/ring/lookup?key=" + key).body["owner"] == "a")
            keys.push_back(key);
    }
    REQUIRE(keys.size() == 5);
    REQUIRE(c.members[0]->tasks->journal()->limit_pages(1).ok());  // no page more
    // The first task for a fails its commit there and goes to b instead.
    const json big = {{"key", keys[0]}, {"type", "echo"}, {"payload", std::string(20'000, 'x')}};
    auto r = c.call(1, "POST", "/v1/tasks", big.dump());
    REQUIRE((r.status == 202 || r.status == 200));
    REQUIRE(r.body["owner"] == "b");
    REQUIRE(r.body["replicas"] == 1);  // a could not store its copy either
    REQUIRE(c.members[0]->tasks->journal_failing().has_value());
    // b hears that a refuses, and its router stops offering a anything.
    auto& b = *c.members[1]->tasks;
    REQUIRE(c.loop.run_until([&] { return !b.lookup(keys[1]).candidates[0].accepting; }));
    const uint64_t retries = b.stats().retries;
    for (size_t i = 1; i < keys.size(); ++i) {
        r = c.submit(1, {{"key", keys[i]}, {"type", "echo"}});
        REQUIRE(r.body["owner"] == "b");
    }
    REQUIRE(b.stats().retries == retries);  // none was offered to a first
    REQUIRE(c.members[0]->tasks->board().stats().accepted == 0);
    // Room again: with no task to try, a's probe finds out; a is healthy again, and b routes
    // a's keys back to it.
    REQUIRE(c.members[0]->tasks->journal()->limit_pages(100000).ok());
    REQUIRE(c.loop.run_until([&] { return c.call(0, "GET", "/v1/health").status == 200; }, 10'000));
    REQUIRE_FALSE(c.members[0]->tasks->journal_failing().has_value());
    REQUIRE(c.loop.run_until([&] { return b.lookup(keys[1]).candidates[0].accepting; }));
    r = c.submit(1, {{"key", keys[1]}, {"type", "echo"}});
    REQUIRE(r.body["owner"] == "a");
}

TEST_CASE("a member holding its most unfinished copies refuses more, and says so") {
    daemon::TaskOptions o;
    o.candidates = 2;
    o.copies_max = 1;
    Cluster c(2, o);
    std::string key;
    for (int k = 0; k < 200 && key.empty(); ++k) {
        const std::string candidate = "k" + std::to_string(k);
        if (c.call(0, "GET", "/v1/ring/lookup?key=" + candidate).body["owner"] == "a")
            key = candidate;
    }
    REQUIRE_FALSE(key.empty());
    // Long tasks of a key whose owners are a then b: the router spreads them a, b (the least
    // loaded, ties to ring order), each copied on the other. A third finds both full of
    // copies: refused on a, then on b, and nothing runs.
    const json task = {{"key", key}, {"type", "sleep"}, {"payload", {{"ms", 10'000}}}};
    for (const char* owner : {"a", "b"}) {
        const auto r = c.submit(0, task);
        REQUIRE(r.status == 202);
        REQUIRE(r.body["owner"] == owner);
    }
    const auto third = c.submit(0, task);
    INFO(third.raw);
    REQUIRE(third.status == 503);
    REQUIRE(third.body["error"]["code"] == "not_replicated");
    const auto& b = *c.members[1]->tasks;
    REQUIRE(b.copies().size() == 1);
    REQUIRE(b.stats().copies_refused == 1);
    REQUIRE(c.members[0]->tasks->stats().copies_refused == 1);
    REQUIRE(c.members[0]->tasks->board().running() + b.board().running() == 2);
    REQUIRE_THAT(c.call(1, "GET", "/metrics").raw,
                 Catch::Contains("\nchorus_task_copies_refused_total 1\n"));
}

namespace {

// Tells `at` that a member `name` is alive at `addr`: one gossip datagram, as a stranger
// could send (core/node.hpp: an unknown member may be announced by anyone).
void announce(Cluster& c, size_t at, const std::string& name, const std::string& addr) {
    Packet p;
    p.cluster = Config::local().cluster;
    p.sender = Name(name);
    p.sender_addr = Address{Name(addr)};
    p.updates = {AliveUpdate{Name(name), Address{Name(addr)}, "", Incarnation{1}, {}, 1}};
    const auto bytes = wire::encode(p);
    const auto to = c.members[at]->agent->bound();
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    ::sendto(fd, bytes.data(), bytes.size(), 0, to.sa(), sizeof(sockaddr_in));
    ::close(fd);
}

}  // namespace

TEST_CASE("an owner that never answers a SYN is passed over within forward_timeout") {
    chorus::test::BlackHole hole;
    REQUIRE(hole.ok());
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(400);
    // The dial outlives the request here, so the request's frame must be taken back unsent;
    // with the agent's own setting (connect timeout = forward timeout) the dial ends with it.
    const bool dial_outlives = GENERATE(true, false);
    INFO("the dial outlives the request: " << dial_outlives);
    Cluster c(2, o, dial_outlives ? 10'000 : 0);
    announce(c, 0, "zz", hole.addr());
    auto& a = *c.members[0]->tasks;
    REQUIRE(c.loop.run_until(
        [&] { return c.members[0]->agent->node().members().find("zz") != nullptr; }));
    a.membership_changed();
    std::string key;
    for (int k = 0; k < 500 && key.empty(); ++k) {
        const std::string candidate = "k" + std::to_string(k);
        if (a.lookup(candidate).choice && a.lookup(candidate).candidates[0].name == "zz")
            key = candidate;
    }
    REQUIRE_FALSE(key.empty());
    const uint64_t started = uv_hrtime();
    const auto r = c.submit(0, {{"key", key}, {"type", "echo"}});
    const uint64_t took_ms = (uv_hrtime() - started) / 1'000'000;
    REQUIRE((r.status == 202 || r.status == 200));
    REQUIRE(r.body["owner"] != "zz");
    // Two minutes of SYN retries otherwise; the margin is for a loaded machine.
    REQUIRE(took_ms < 400 + 3'000);
    REQUIRE(a.stats().retries >= 1);
    if (dial_outlives) {
        REQUIRE(a.stats().frames_unsent >= 1);
    } else {
        REQUIRE(
            c.loop.run_until([&] { return c.members[0]->agent->streams().stats().timeouts >= 1; }));
    }
}

TEST_CASE("a task whose holders do not answer is unavailable, naming them, not unknown") {
    Silent silent_owner, silent_holder;  // outlive the cluster
    daemon::TaskOptions o;
    o.forward_timeout = milliseconds(300);
    Cluster c(3, o);
    const auto r = c.submit(0, {{"key", "away"}, {"type", "sleep"}, {"payload", {{"ms", 60'000}}}});
    REQUIRE(r.status == 202);
    const std::string id = r.body["id"];
    const size_t owner = c.index_of(r.body["owner"]);
    const size_t holder = c.holder_of(id);
    const size_t third = 3 - owner - holder;
    const std::string owner_name = r.body["owner"];
    const std::string holder_name = c.members[holder]->agent->node().self().name.str();
    c.silence(owner, silent_owner);
    c.silence(holder, silent_holder);
    const auto q = c.call(third, "GET", "/v1/tasks/" + id);
    INFO(q.raw);
    REQUIRE(q.status == 503);
    REQUIRE(q.body["error"]["code"] == "unavailable");
    const std::string why = q.body["error"]["message"];
    REQUIRE_THAT(why, Catch::Contains(owner_name) && Catch::Contains(holder_name));
    REQUIRE(q.raw.find("Retry-After: ") != std::string::npos);
    // An id nobody holds, asked of members that all answer, is unknown.
    const auto none = c.call(third, "GET", "/v1/tasks/" + id.substr(0, 17) + "nobody");
    REQUIRE(none.status == 503);  // the silent two may hold it: still not a 404
}

TEST_CASE("a holder that restarts after the owner died takes its copies over") {
    TempDir d;
    daemon::TaskOptions o;
    o.data_dir = d.path;
    o.copy_check = milliseconds(100);
    Cluster c(3, o);
    const auto r =
        c.submit(0, {{"key", "orphan"}, {"type", "sleep"}, {"payload", {{"ms", 60'000}}}});
    REQUIRE(r.status == 202);
    const std::string id = r.body["id"];
    const size_t owner = c.index_of(r.body["owner"]);
    const size_t holder = c.holder_of(id);
    const size_t third = 3 - owner - holder;
    const Name owner_name = c.members[owner]->agent->node().self().name;
    // The holder's task service is down (its process restarting) while the owner dies for
    // good: the member event that would have made it take the task over goes nowhere.
    c.members[holder]->api.reset();
    c.members[holder]->tasks.reset();
    c.members[owner].reset();
    REQUIRE(c.loop.run_until(
        [&] {
            const chorus::Member* m = c.members[holder]->agent->node().members().find(owner_name);
            const chorus::Member* t = c.members[third]->agent->node().members().find(owner_name);
            return m != nullptr && is_gone(m->state) && t != nullptr && is_gone(t->state);
        },
        30'000));
    c.start_tasks(*c.members[holder]);  // back, with the copy from its journal
    c.members[holder]->api->attach(c.members[holder]->server.get());
    REQUIRE(c.loop.run_until(
        [&] {
            const Task* t = c.members[holder]->tasks->board().find(id);
            return t != nullptr && t->state == TaskState::running;
        },
        10'000));
    REQUIRE(c.members[holder]->tasks->copy(id) == nullptr);
    REQUIRE(c.call(third, "DELETE", "/v1/tasks/" + id).status == 200);
}
