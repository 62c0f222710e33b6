// TaskNode's contract with its driver, on virtual time: what it asks for, in which order, and
// what waits for what. The protocol's runs under faults are the simulator's (test/sim).
#include "core/task_node.hpp"

#include <functional>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xxhash.h>
#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace chorus;

namespace {

uint64_t hash(std::string_view s) {
    return XXH3_64bits(s.data(), s.size());
}

const char* const kNames[] = {"a", "b", "c"};

// Members a, b and c, joined on the core harness, each with a journaled TaskNode over its
// Node. Nothing moves unless the test says so: frames wait for deliver(), commits for
// commit(), handlers for finish(), time for advance().
struct Tasks {
    struct Frame {
        std::string from;
        std::string to;
        TaskMessage message;
    };

    test::Cluster members;
    std::map<std::string, std::unique_ptr<TaskNode>> nodes;
    std::map<std::string, uint64_t> staged;  // journal changes each asked for (its numbering)
    std::map<std::string, std::vector<JournalChange>> journal;
    std::map<std::string, std::vector<std::string>> started;
    std::vector<Frame> frames;  // sent, not delivered yet
    std::vector<std::pair<std::string, uint64_t>> abandoned;

    // `handlers`: a member's task types, when not just "work"; such a member advertises them
    // as the agent does (kHandlersTag).
    explicit Tasks(TaskNodeConfig config = {},
                   std::map<std::string, std::set<std::string>> handlers = {}) {
        members.add("a");
        members.add("b", {"a"});
        members.add("c", {"a"});
        members.run_for(seconds(3));
        for (const char* n : kNames) {
            std::set<std::string> types = {"work"};
            if (auto h = handlers.find(n); h != handlers.end()) {
                types = h->second;
                members[n].set_tags(
                    {{std::string(kHandlersTag), fmt::format("{}", fmt::join(types, ","))}},
                    members.now);
            }
            // Seeds apart, as the daemon's are: ids made at different entries never meet.
            nodes[n] = std::make_unique<TaskNode>(config, members[n], hash, types, true,
                                                  std::nullopt, nodes.size() + 1, members.now);
        }
        if (!handlers.empty()) members.run_for(seconds(2));  // the tags spread
    }

    // `spec` submitted at `entry`, and the answer once what it waits for is done.
    TaskAnswer run(const std::string& entry, TaskSpec spec) {
        std::optional<TaskAnswer> answer;
        nodes.at(entry)->submit(
            std::move(spec), {}, [&](TaskAnswer x) { answer = std::move(x); }, 0, now());
        settle();
        REQUIRE(answer);
        return std::move(*answer);
    }

    // The members holding the copy of an acknowledged task, as its owner knows them.
    std::vector<Name> holders(const TaskAnswer& a) {
        REQUIRE(a.task);
        const auto* h = nodes.at(a.task->owner.str())->tracker().holders(a.task->spec.id);
        REQUIRE(h != nullptr);
        return *h;
    }

    // Commits every journal and delivers every frame, `rounds` times: what a task's
    // acknowledgement or a hand-off waits for, when nothing is lost.
    void settle(int rounds = 8) {
        for (int i = 0; i < rounds; ++i) {
            for (const char* n : kNames)
                commit(n);
            deliver();
        }
    }

    Time now() const { return members.now; }
    TaskNode& operator[](const std::string& n) { return *nodes.at(n); }

    static uint64_t link_of(const std::string& n) { return static_cast<uint64_t>(n[0]); }

    // Takes what every node asked for.
    void drain() {
        for (auto& [n, node] : nodes) {
            TaskOutbox out = std::move(node->outbox());
            node->outbox() = {};
            for (JournalChange& c : out.journal) {
                if (c.kind != JournalChange::Kind::unstage) ++staged[n];
                journal[n].push_back(std::move(c));
            }
            for (std::string& id : out.starts)
                started[n].push_back(std::move(id));
            for (TaskSend& s : out.sends)
                frames.push_back({n, s.to.str(), std::move(s.message)});
            for (TaskReplyOut& r : out.replies)
                frames.push_back({n, std::string(1, static_cast<char>(r.link)), r.reply});
            for (auto& a : out.abandoned)
                abandoned.emplace_back(a.first.str(), a.second);
        }
    }

    // Hands every waiting frame over, and what they cause, until none is left; `lost` frames
    // vanish instead. Returns how many were delivered.
    size_t deliver(const std::function<bool(const Frame&)>& lost = nullptr) {
        size_t delivered = 0;
        drain();
        while (!frames.empty()) {
            std::vector<Frame> now_due = std::move(frames);
            frames.clear();
            for (Frame& f : now_due) {
                if (lost && lost(f)) continue;
                nodes.at(f.to)->on_message(Name(f.from), link_of(f.from), std::move(f.message),
                                           now());
                ++delivered;
            }
            drain();
        }
        return delivered;
    }

    // `n`'s journal commits everything it staged.
    void commit(const std::string& n) {
        drain();
        nodes.at(n)->committed(staged[n], Ok{}, now());
        drain();
    }

    // Virtual time passes (membership runs on), each node ticking when its deadline comes.
    void advance(Duration d, const std::function<bool(const Frame&)>& lost = nullptr) {
        const Time end = now() + d;
        while (now() < end) {
            members.run_for(milliseconds(10));
            // Membership's news reaches each member's task layer, as the drivers pass it on.
            for (auto& [observer, e] : std::exchange(members.events, {})) {
                if (auto n = nodes.find(observer); n != nodes.end())
                    n->second->member_changed(e, now());
            }
            for (auto& [n, node] : nodes) {
                if (node->next_deadline() <= now()) node->tick(now());
            }
            deliver(lost);
        }
    }

    // advance(), with every member's journal committing what it staged as it goes (what the
    // daemon's does within milliseconds).
    void live_for(Duration d, const std::function<bool(const Frame&)>& lost = nullptr) {
        const Time end = now() + d;
        while (now() < end) {
            advance(milliseconds(10), lost);
            for (auto& [n, node] : nodes)
                commit(n);
            deliver(lost);
        }
    }

    // `at` holds `t`'s copy, sent by its owner and committed; nothing is left to deliver.
    void hold_copy(const std::string& at, const Task& t) {
        nodes.at(at)->on_message(t.owner, link_of(t.owner.str()), TaskCopy{1, t, false}, now());
        commit(at);
        frames.clear();
    }
    // The one frame sent since the last look, a reply.
    const TaskReply& only_reply() {
        drain();
        REQUIRE(frames.size() == 1);
        const auto* r = std::get_if<TaskReply>(&frames[0].message);
        REQUIRE(r != nullptr);
        return *r;
    }

    // A key `owner` is the router's choice for, with every member idle.
    std::string key_owned_by(const std::string& owner) {
        for (int i = 0; i < 1000; ++i) {
            const std::string key = "k" + std::to_string(i);
            const auto l = nodes.at(owner)->lookup(key, now());
            if (l.choice && l.candidates[*l.choice].name == owner) return key;
        }
        FAIL("no key owned by " << owner);
        return {};
    }
};

TaskSpec work(std::string key) {
    TaskSpec s;
    s.key = std::move(key);
    s.type = "work";
    return s;
}

// A record of `owner`'s task named `name`, as a copy frame carries it.
Task record_of(const std::string& key, const std::string& name, const std::string& owner,
               TaskState state = TaskState::queued) {
    Task t;
    t.spec = work(key);
    t.spec.id = make_task_id(hash(key), name);
    t.owner = Name(owner);
    t.state = state;
    return t;
}

}  // namespace

TEST_CASE("a task runs and is acknowledged only once its journal commit and its copy are done") {
    Tasks t;
    std::optional<TaskAnswer> answer;
    t["a"].submit(
        work(t.key_owned_by("a")), {}, [&](TaskAnswer a) { answer = std::move(a); }, 0, t.now());
    t.drain();
    // Two things at once: the record is staged with a commit asked for, and a copy goes out.
    REQUIRE(t.staged["a"] == 1);
    REQUIRE(t.journal["a"][0].kind == JournalChange::Kind::put);
    REQUIRE(t.frames.size() == 1);
    REQUIRE(std::holds_alternative<TaskCopy>(t.frames[0].message));
    const std::string holder = t.frames[0].to;
    REQUIRE(holder != "a");

    SECTION("the copy first, then the owner's commit") {
        t.deliver();
        // The holder stages the copy; its answer waits for its own commit.
        REQUIRE(t.staged[holder] == 1);
        const auto* holders = t["a"].tracker().holders(t.journal["a"][0].id);
        REQUIRE(holders != nullptr);
        REQUIRE(holders->empty());
        t.commit(holder);
        t.deliver();
        REQUIRE_FALSE(answer);  // stored on two members, but not yet in a's journal
        REQUIRE(t.started["a"].empty());
        t.commit("a");
    }
    SECTION("the owner's commit, then the copy") {
        t.commit("a");
        REQUIRE_FALSE(answer);
        REQUIRE(t.started["a"].empty());
        t.deliver();
        t.commit(holder);
        t.deliver();
    }
    REQUIRE(answer);
    REQUIRE(answer->status == 202);
    REQUIRE(answer->replicas == 2);
    REQUIRE(t.started["a"].size() == 1);
    REQUIRE(t["a"].tracker().under_replicated() == 0);
}

TEST_CASE("a task no member copies in time is refused, leaves nothing behind, and never runs") {
    TaskNodeConfig config;
    config.candidates = 1;  // a alone may own the key: the answer is a's own
    Tasks t(config);
    std::optional<TaskAnswer> answer;
    t["a"].submit(
        work(t.key_owned_by("a")), {}, [&](TaskAnswer a) { answer = std::move(a); }, 0, t.now());
    t.commit("a");
    size_t drops = 0;  // copies lost on the way, and the drops that follow them
    const auto copies_lost = [&](const Tasks::Frame& f) {
        const auto* c = std::get_if<TaskCopy>(&f.message);
        if (c != nullptr && c->drop) ++drops;
        return c != nullptr;
    };
    t.advance(config.forward_timeout + milliseconds(50), copies_lost);
    REQUIRE(answer);
    REQUIRE(answer->status == 503);
    REQUIRE(answer->code == "not_replicated");
    REQUIRE(t["a"].board().kept() == 0);
    REQUIRE(t.started["a"].empty());
    // Its record goes from the journal too, or a restart would bring it back.
    REQUIRE(t.journal["a"].back().kind == JournalChange::Kind::remove);
    // Both members tried were given up on after copy_timeout, and told to drop what they may
    // store late.
    REQUIRE(t["a"].tracker().stats().timeouts == 2);
    REQUIRE(drops == 2);
    REQUIRE(t["a"].requests() == 0);
}

TEST_CASE("a request never answered fails at its deadline, and its frame is abandoned") {
    Tasks t;
    const std::string key = t.key_owned_by("b");
    std::optional<TaskAnswer> answer;
    t["a"].submit(
        work(key), {}, [&](TaskAnswer a) { answer = std::move(a); }, 0, t.now());
    t.drain();
    REQUIRE(t.frames.size() == 1);
    REQUIRE(t.frames[0].to == "b");  // forwarded to b, which never answers
    const auto from_a_to_b = [](const Tasks::Frame& f) { return f.from == "a" && f.to == "b"; };
    t.advance(TaskNodeConfig{}.forward_timeout - milliseconds(20), from_a_to_b);
    REQUIRE(t.abandoned.empty());  // not before its deadline
    REQUIRE(t["a"].stats().forward_timeouts == 0);
    t.advance(milliseconds(40), from_a_to_b);
    REQUIRE(t.abandoned.size() >= 1);
    REQUIRE(t.abandoned[0].first == "b");
    // The next candidate was tried.
    REQUIRE(t["a"].stats().forward_timeouts == 1);
    REQUIRE(t["a"].stats().retries == 1);
}

TEST_CASE("a client's wait ends at its deadline with the task as it stands, or when it ends") {
    TaskNodeConfig config;
    config.task_replicas = 1;  // no copies: the owner alone
    Tasks t(config);
    std::optional<TaskAnswer> accepted;
    t["a"].submit(
        work(t.key_owned_by("a")), {}, [&](TaskAnswer a) { accepted = std::move(a); }, 0, t.now());
    t.commit("a");
    REQUIRE(accepted);
    REQUIRE(accepted->status == 202);
    const std::string id = accepted->task->spec.id;
    REQUIRE(t.started["a"] == std::vector<std::string>{id});

    std::optional<TaskAnswer> waited;
    t["a"].query(
        id, seconds(1), false, [&](TaskAnswer a) { waited = std::move(a); }, 0, t.now());
    REQUIRE_FALSE(waited);
    REQUIRE(t["a"].waiting() == 1);
    t.advance(milliseconds(990));
    REQUIRE_FALSE(waited);
    t.advance(milliseconds(30));
    REQUIRE(waited);
    REQUIRE(waited->status == 200);
    REQUIRE(waited->task->state == TaskState::running);

    waited.reset();
    t["a"].query(
        id, seconds(30), false, [&](TaskAnswer a) { waited = std::move(a); }, 0, t.now());
    TaskOutcome done;
    done.result = "42";
    t["a"].finished(id, done, t.now());
    REQUIRE(waited);
    REQUIRE(waited->task->state == TaskState::succeeded);
    REQUIRE(t["a"].waiting() == 0);
}

TEST_CASE("a copy is taken only from its task's owner") {
    Tasks t;
    const Task forged = record_of("k1", "forged", "c");  // b claims c's task
    t["a"].on_message(Name("b"), Tasks::link_of("b"), TaskCopy{7, forged, false}, t.now());
    t.drain();
    REQUIRE(t["a"].copies().size() == 0);
    REQUIRE(t["a"].stats().copies_not_owner == 1);
    REQUIRE(t.frames.size() == 1);
    const auto* r = std::get_if<TaskReply>(&t.frames[0].message);
    REQUIRE(r != nullptr);
    REQUIRE(r->status == 403);
    REQUIRE(r->code == "not_owner");
}

TEST_CASE("a finished copy that says not when it finished is taken over without harm") {
    Tasks t;
    // And no `finished`: a peer's word, not to be trusted.
    Task done = record_of("k2", "undated", "c", TaskState::succeeded);
    done.result = "1";
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskCopy{0, done, false}, t.now());
    t.commit("a");
    REQUIRE(t["a"].copies().find(done.spec.id) != nullptr);
    REQUIRE(t["a"].copies().find(done.spec.id)->finished.has_value());
    // Its owner dies: the result becomes a's own, and the board orders it by when it finished.
    t.members.crash("c");
    t.nodes.erase("c");
    t.advance(seconds(20));
    const Task* kept = t["a"].board().find(done.spec.id);
    REQUIRE(kept != nullptr);
    REQUIRE(kept->owner == Name("a"));
    REQUIRE(kept->finished.has_value());
}

TEST_CASE("a copy from an owner a task was taken from neither overwrites nor drops the taker's") {
    // b took the task over from c, wrongly declared dead, and ran it; c, still up, sends its
    // older record and then, refusing the task, its drop.
    Tasks t;
    Task taken = record_of("k3", "taken", "b", TaskState::running);
    taken.attempts = 2;
    t.hold_copy("a", taken);
    Task stale = taken;
    stale.owner = Name("c");
    stale.state = TaskState::queued;
    stale.attempts = 0;
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskCopy{2, stale, false}, t.now());
    REQUIRE(t.only_reply().status == 503);  // not stored: c counts no copy here
    t.frames.clear();
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskCopy{0, stale, true}, t.now());
    t.drain();
    const Task* held = t["a"].copies().find(taken.spec.id);
    REQUIRE(held != nullptr);
    REQUIRE(held->owner == Name("b"));
    REQUIRE(held->state == TaskState::running);
    REQUIRE(t["a"].stats().copies_stale == 1);
    REQUIRE(t["a"].stats().dropped == 0);

    // The taker's own later word still lands.
    Task done = taken;
    done.state = TaskState::succeeded;
    done.result = "7";
    t["a"].on_message(Name("b"), Tasks::link_of("b"), TaskCopy{3, done, false}, t.now());
    t.commit("a");
    REQUIRE(t["a"].copies().find(taken.spec.id)->state == TaskState::succeeded);
}

TEST_CASE("a leaving node's drain ends once the holders have stored the outcomes") {
    // Its leave is gossip and may overtake the outcome's frame: a holder that hears of the
    // leave first would take the finished task over and run it again.
    Tasks t;
    std::optional<TaskAnswer> accepted;
    t["a"].submit(
        work(t.key_owned_by("a")), {}, [&](TaskAnswer a) { accepted = std::move(a); }, 0, t.now());
    t.commit("a");
    t.deliver();
    for (const char* n : {"b", "c"})
        t.commit(n);
    t.deliver();
    REQUIRE(accepted);
    REQUIRE(accepted->status == 202);
    const std::string id = accepted->task->spec.id;
    const auto holders = t["a"].tracker().holding(id);
    REQUIRE(holders.size() == 1);
    const std::string holder = holders[0].str();

    std::optional<std::pair<size_t, size_t>> drained;
    t["a"].hand_off(
        seconds(5), [&](size_t handed, size_t kept) { drained.emplace(handed, kept); }, t.now());
    REQUIRE_FALSE(drained);  // its task still runs
    TaskOutcome done;
    done.result = "1";
    t["a"].finished(id, done, t.now());
    t.deliver();
    REQUIRE_FALSE(drained);  // the outcome is on its way to the holder's journal
    REQUIRE(t[holder].copies().find(id)->state == TaskState::succeeded);
    t.commit(holder);
    t.deliver();
    REQUIRE(drained);
    REQUIRE(*drained == std::pair<size_t, size_t>{0, 0});
}

TEST_CASE("a named task asked for before it is stored is not unknown, and a retry joins it") {
    Tasks t;
    TaskSpec named = work(t.key_owned_by("b"));
    named.id = "again";
    std::optional<TaskAnswer> first, second, looked;
    t["a"].submit(
        named, {}, [&](TaskAnswer a) { first = std::move(a); }, 0, t.now());
    // a asks the key's candidates whether the name is taken, then forwards to b, which
    // stages the task and sends its copy; the copy is held up, so b holds the task pending and
    // nobody else has it.
    std::vector<Tasks::Frame> held;
    const auto hold_copies = [&](const Tasks::Frame& f) {
        if (!std::holds_alternative<TaskCopy>(f.message)) return false;
        held.push_back(f);
        return true;
    };
    t.deliver(hold_copies);
    REQUIRE(held.size() == 1);
    REQUIRE(t["b"].requests() > 0);
    REQUIRE_FALSE(first);
    const std::string id = make_task_id(hash(named.key), "again");
    REQUIRE(t["b"].board().find(id) == nullptr);

    // Looked up meanwhile: b says it holds the task unacknowledged; that is not a 404.
    t["c"].query(
        id, {}, false, [&](TaskAnswer a) { looked = std::move(a); }, 0, t.now());
    t.deliver(hold_copies);
    REQUIRE(looked);
    REQUIRE(looked->status == 503);
    REQUIRE(looked->code == "pending");
    // And the client's retry through c joins the first submission at b.
    t["c"].submit(
        named, {}, [&](TaskAnswer a) { second = std::move(a); }, 0, t.now());
    t.deliver(hold_copies);
    REQUIRE_FALSE(second);
    REQUIRE(held.size() == 1);
    t.frames = std::move(held);  // the copy arrives
    t.deliver();
    for (const char* n : {"a", "b", "c"})
        t.commit(n);
    t.deliver();
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(first->status == 202);
    REQUIRE(second->status == 202);
    REQUIRE(second->task->spec.id == id);
    REQUIRE(t["b"].board().stats().accepted == 1);
    REQUIRE(t["a"].board().find(id) == nullptr);
    REQUIRE(t["c"].board().find(id) == nullptr);
}

TEST_CASE("two owners' records of a task as far along: the one held stays, the other is refused") {
    // c, slow, still copies a task it is about to refuse; b, the next candidate, accepted it
    // and its copy is here. c's copy must not replace b's, or c's drop would erase it.
    Tasks t;
    const Task accepted_by_b = record_of("k4", "both", "b");
    t.hold_copy("a", accepted_by_b);
    const Task late_from_c = record_of("k4", "both", "c");
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskCopy{2, late_from_c, false}, t.now());
    REQUIRE(t.only_reply().status == 503);  // refused: c tries another member
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskCopy{0, late_from_c, true}, t.now());
    const Task* held = t["a"].copies().find(accepted_by_b.spec.id);
    REQUIRE(held != nullptr);
    REQUIRE(held->owner == Name("b"));
    REQUIRE(t["a"].stats().copies_stale == 1);
}

TEST_CASE("a task sent to a member holding its copy is refused there unless its owner hands it") {
    // a gave up on b, the owner, too soon and tries c, which holds b's copy: taking it would
    // make a second owner that runs it again. From b itself it is a hand-off, and c takes it.
    Tasks t;
    const Task of_b = record_of("k5", "held", "b");
    t.hold_copy("c", of_b);
    t["c"].on_message(Name("a"), Tasks::link_of("a"), TaskSubmit{2, of_b.spec, seconds(1)},
                      t.now());
    const TaskReply& r = t.only_reply();
    REQUIRE(r.status == 503);
    REQUIRE(r.code == "held_elsewhere");
    REQUIRE(t["c"].board().find(of_b.spec.id) == nullptr);
    REQUIRE(t["c"].copies().find(of_b.spec.id)->owner == Name("b"));

    t.frames.clear();
    t["c"].on_message(Name("b"), Tasks::link_of("b"), TaskSubmit{3, of_b.spec, seconds(1)},
                      t.now());
    t.deliver();
    t.commit("c");
    t.deliver();
    for (const char* n : {"a", "b"})
        t.commit(n);
    t.deliver();
    REQUIRE(t["c"].board().find(of_b.spec.id) != nullptr);
    REQUIRE(t["c"].copies().find(of_b.spec.id) == nullptr);  // its own task now, not a copy
}

TEST_CASE("a named retry joins the pending first submission even when a copy is found first") {
    // The copy is stored before its owner acknowledges the task, which its owner may still
    // refuse: the retry must hear the owner's verdict, not the copy's word.
    Tasks t;
    TaskSpec named = work(t.key_owned_by("b"));
    named.id = "copied";
    std::optional<TaskAnswer> first, second;
    t["a"].submit(
        named, {}, [&](TaskAnswer a) { first = std::move(a); }, 0, t.now());
    t.deliver();  // b stages it and its copy reaches its holder, which stages it too
    REQUIRE_FALSE(first);
    t["c"].submit(
        named, {}, [&](TaskAnswer a) { second = std::move(a); }, 0, t.now());
    t.deliver();
    REQUIRE_FALSE(second);  // joined at b: nothing is answered before b's verdict
    for (const char* n : {"a", "b", "c"})
        t.commit(n);
    t.deliver();
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(first->status == 202);
    REQUIRE(second->status == 202);
    REQUIRE(t["b"].board().stats().accepted == 1);
}

TEST_CASE("a task that asks for tags runs only on members carrying them, and so does its copy") {
    Tasks t;
    for (const char* n : {"b", "c"})
        t.members[n].set_tags({{"role", "gpu"}}, t.now());
    t.advance(seconds(2));  // gossiped under the next incarnation
    std::set<std::string> owners;
    for (int i = 0; i < 20; ++i) {
        TaskSpec s = work("k" + std::to_string(i));
        s.where = {{"role", "gpu"}};
        const TaskAnswer a = t.run("a", s);
        REQUIRE(a.status == 202);
        const std::string owner = a.task->owner.str();
        REQUIRE(owner != "a");
        owners.insert(owner);
        REQUIRE(t.holders(a) == std::vector<Name>{Name(owner == "b" ? "c" : "b")});
        REQUIRE(a.task->spec.where == Tags{{"role", "gpu"}});
    }
    REQUIRE(owners.size() == 2);  // both gpu members, by key
    REQUIRE(t["a"].board().kept() == 0);
    REQUIRE(t["a"].copies().size() == 0);
}

TEST_CASE("no member carrying the tags asked for is a 503 no_match, no handler anywhere a 422") {
    Tasks t({}, {{"a", {"work"}}, {"b", {"work"}}, {"c", {"work"}}});
    t.members["c"].set_tags({{"role", "gpu"}, {std::string(kHandlersTag), "work"}}, t.now());
    t.advance(seconds(2));
    const auto ask = [&](TaskSpec s) { return t.run("a", std::move(s)); };
    TaskSpec s = work("k");
    s.where = {{"role", "tpu"}};
    const TaskAnswer none = ask(s);
    REQUIRE(none.status == 503);
    REQUIRE(none.code == "no_match");
    REQUIRE_THAT(none.message, Catch::Contains("role=tpu"));

    s.where = {{"role", "gpu"}, {"zone", "b"}};  // every constraint must hold
    REQUIRE(ask(s).code == "no_match");

    s = work("k");
    s.type = "paint";
    const TaskAnswer unknown = ask(s);
    REQUIRE(unknown.status == 422);
    REQUIRE(unknown.code == "unknown_type");
    REQUIRE_THAT(unknown.message, Catch::Contains("no member has a handler named 'paint'"));

    s = work("k");
    s.where = {{"", "x"}};
    REQUIRE(ask(s).code == "bad_where");
    for (const char* n : kNames)
        REQUIRE(t.started[n].empty());
}

TEST_CASE("an entry without a task's handler sends it to a member that has one, copies too") {
    // a runs "work" only; b and c run "paint" as well, and say so in their tags.
    Tasks t({}, {{"a", {"work"}}, {"b", {"paint", "work"}}, {"c", {"paint", "work"}}});
    for (int i = 0; i < 10; ++i) {
        TaskSpec s = work("k" + std::to_string(i));
        s.type = "paint";
        const TaskAnswer a = t.run("a", s);
        REQUIRE(a.status == 202);
        REQUIRE(a.task->owner != "a");
        const auto holders = t.holders(a);
        REQUIRE(holders.size() == 1);
        REQUIRE(holders.front() != "a");
    }
    REQUIRE(t.started["a"].empty());
    REQUIRE(t["a"].copies().size() == 0);
}

TEST_CASE("a draining member takes no new task, hands its queue over, and takes tasks again") {
    TaskNodeConfig config;
    config.limits.capacity = 1;
    config.candidates = 1;  // a alone owns its keys: its queue grows
    Tasks t(config);
    const std::string key = t.key_owned_by("a");
    for (int i = 0; i < 3; ++i)
        REQUIRE(t.run("a", work(key)).status == 202);
    REQUIRE(t["a"].board().running() == 1);
    REQUIRE(t["a"].board().queued() == 2);

    std::optional<std::pair<size_t, size_t>> moved;
    t.members["a"].set_tags({{std::string(kDrainTag), "1"}}, t.now());  // the driver's part
    t["a"].drain(
        true,
        [&](size_t handed, size_t kept) {
            moved = {handed, kept};
        },
        t.now());
    t.settle();
    REQUIRE(moved == std::pair<size_t, size_t>{2, 0});
    REQUIRE(t["a"].draining());
    REQUIRE(t["a"].board().running() == 1);  // let finish
    REQUIRE(t["a"].board().queued() == 0);
    REQUIRE(t.started["b"].size() + t.started["c"].size() >= 1);

    // Its keys go to the next candidates, from any entry, itself included.
    t.advance(seconds(1));
    for (const char* entry : {"a", "b"}) {
        const TaskAnswer a = t.run(entry, work(key));
        INFO(a.code << ": " << a.message);
        REQUIRE(a.status == 202);
        REQUIRE(a.task->owner != "a");
    }
    REQUIRE(t["a"].board().queued() == 0);

    t.members["a"].set_tags({}, t.now());
    t["a"].drain(
        false, [](size_t, size_t) {}, t.now());
    t.advance(seconds(1));
    REQUIRE_FALSE(t["a"].draining());
    REQUIRE(t.run("b", work(t.key_owned_by("a"))).task->owner == "a");
}

TEST_CASE("a drain asked for while the node leaves keeps the leave going, and ends nothing") {
    TaskNodeConfig config;
    config.limits.capacity = 1;
    config.candidates = 1;
    Tasks t(config);
    const std::string key = t.key_owned_by("a");
    for (int i = 0; i < 2; ++i)
        REQUIRE(t.run("a", work(key)).status == 202);
    REQUIRE(t["a"].board().running() == 1);
    std::optional<std::pair<size_t, size_t>> left;
    t["a"].hand_off(
        seconds(30),
        [&](size_t handed, size_t kept) {
            left = {handed, kept};
        },
        t.now());
    std::optional<std::pair<size_t, size_t>> drained;
    t["a"].drain(
        true,
        [&](size_t handed, size_t kept) {
            drained = {handed, kept};
        },
        t.now());
    REQUIRE(drained == std::pair<size_t, size_t>{0, 0});
    t["a"].drain(
        false, [](size_t, size_t) {}, t.now());  // does not undo the leave's hand-off
    t.settle();
    REQUIRE(t["a"].board().queued() == 0);
    REQUIRE_FALSE(left);  // the running task holds the leave, up to its drain time
    t["a"].finished(t.started["a"].front(), TaskOutcome{}, t.now());
    t.settle();
    t.advance(milliseconds(100));
    REQUIRE(left == std::pair<size_t, size_t>{1, 0});
}

TEST_CASE("members say their ring checksum on probes, so each knows who sees the ring as it does") {
    Tasks t;
    t.advance(seconds(5));
    const auto said = [&](const char* observer, const char* member) {
        const Member* m = t.members[observer].members().find(Name(member));
        REQUIRE(m != nullptr);
        return m->ring_checksum;
    };
    const auto three = static_cast<uint32_t>(t["a"].ring().checksum());
    for (const char* o : kNames) {
        REQUIRE(static_cast<uint32_t>(t[o].ring().checksum()) == three);
        for (const char* m : kNames) {
            if (std::string_view(o) != m) REQUIRE(said(o, m) == three);
        }
    }
    // A fourth member, with no task layer (it says no checksum): the three's rings change, and
    // so does what they say to each other.
    t.members.add("d", {"a"});
    t.advance(seconds(5));
    const auto four = static_cast<uint32_t>(t["a"].ring().checksum());
    REQUIRE(four != three);
    REQUIRE(t["a"].ring().members().size() == 4);
    for (const char* o : kNames) {
        REQUIRE(static_cast<uint32_t>(t[o].ring().checksum()) == four);
        REQUIRE(said(o, "d") == 0);
        for (const char* m : kNames) {
            if (std::string_view(o) != m) REQUIRE(said(o, m) == four);
        }
    }
}

// ---- coordinator placement and singletons (issue 17) ----

namespace {

TaskSpec coordinated(std::string key) {
    TaskSpec s = work(std::move(key));
    s.placement = TaskPlacement::coordinator;
    return s;
}

// Frames to members that crashed vanish.
std::function<bool(const Tasks::Frame&)> to_any_of(std::set<std::string> gone) {
    return [gone = std::move(gone)](const Tasks::Frame& f) { return gone.contains(f.to); };
}

}  // namespace

TEST_CASE(
    "the coordinator assigns each task to the least loaded member, and refuses when all are full") {
    TaskNodeConfig config;
    config.limits.capacity = 2;
    config.limits.queue_max = 0;
    Tasks t(config);
    // No priorities: a, the lowest name, coordinates. Every task enters at c.
    t["c"].submit(
        coordinated("k0"), {}, [](TaskAnswer) {}, 0, t.now());
    t.drain();
    REQUIRE(t.frames.size() == 1);
    REQUIRE(t.frames[0].to == "a");
    const auto* ask = std::get_if<TaskSubmit>(&t.frames[0].message);
    REQUIRE(ask != nullptr);
    REQUIRE(ask->assign);
    const std::string id = ask->spec.id;
    t.settle();
    std::map<std::string, int> owners;
    for (const Task* task :
         {t["a"].board().find(id), t["b"].board().find(id), t["c"].board().find(id)}) {
        if (task != nullptr) ++owners[task->owner.str()];
    }
    for (int i = 1; i < 6; ++i) {
        const TaskAnswer a = t.run("c", coordinated("k" + std::to_string(i)));
        REQUIRE(a.status == 202);
        REQUIRE(a.task->spec.placement == TaskPlacement::coordinator);
        ++owners[a.task->owner.str()];
    }
    // Six tasks, two slots each: the coordinator counted what it sent, so no member got a
    // third while another had room, whichever key the tasks had.
    REQUIRE(owners == std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}});
    REQUIRE(t["a"].stats().assigned == 6);
    REQUIRE(t["c"].stats().assigned == 0);
    // Once the members have said they are full (the coordinator refuses on reported loads:
    // what it sent since may have finished already), a task is refused at once.
    t.live_for(seconds(1));
    const TaskAnswer full = t.run("c", coordinated("k6"));
    REQUIRE(full.status == 503);
    REQUIRE(full.code == "overloaded");
    REQUIRE_THAT(full.message, Catch::Contains("load threshold"));
    REQUIRE(t["a"].stats().overloaded == 1);
}

TEST_CASE("a silent coordinator is passed over for the next in line, and the task runs once") {
    Tasks t;
    t.members.crash("a");
    t.nodes.erase("a");
    const auto lost = to_any_of({"a"});
    // At once: c still takes a for the coordinator, asks it, and after the request's deadline
    // asks b, the next in line (the one that takes over once c's view drops a).
    std::optional<TaskAnswer> first;
    t["c"].submit(
        coordinated("k1"), {}, [&](TaskAnswer x) { first = std::move(x); }, 0, t.now());
    t.live_for(TaskNodeConfig{}.forward_timeout + milliseconds(500), lost);
    REQUIRE(first);
    INFO(first->code << ": " << first->message);
    REQUIRE(first->status == 202);
    REQUIRE(first->task->owner != Name("a"));
    REQUIRE(t["c"].stats().retries >= 1);
    size_t runs = t.started["b"].size() + t.started["c"].size();
    REQUIRE(runs == 1);
    // Once a has gone quiet for a while (its φ is high, before it is declared dead), c asks b
    // first: no wait.
    t.live_for(seconds(2), lost);
    t["c"].submit(
        coordinated("k2"), {}, [](TaskAnswer) {}, 0, t.now());
    t.drain();
    REQUIRE(t.frames.size() == 1);
    REQUIRE(t.frames[0].to == "b");
    REQUIRE(std::get<TaskSubmit>(t.frames[0].message).assign);
}

TEST_CASE(
    "a singleton runs on the coordinator, its copy waits on the next, which runs it if it dies") {
    Tasks t;
    TaskSpec s = work(t.key_owned_by("c"));
    s.singleton = true;
    const TaskAnswer a = t.run("c", s);
    REQUIRE(a.status == 202);
    REQUIRE(a.task->owner == Name("a"));  // not the key's owner
    REQUIRE(a.task->spec.placement == TaskPlacement::coordinator);
    REQUIRE(t.holders(a) == std::vector<Name>{Name("b")});
    REQUIRE(t.started["a"] == std::vector<std::string>{a.task->spec.id});
    // a dies before it finishes: b, the next coordinator, runs it.
    t.members.crash("a");
    t.nodes.erase("a");
    t.live_for(seconds(20), to_any_of({"a"}));
    REQUIRE(t.started["b"] == std::vector<std::string>{a.task->spec.id});
    REQUIRE(t.started["c"].empty());
    REQUIRE(t["b"].board().find(a.task->spec.id)->owner == Name("b"));
}

TEST_CASE("a singleton follows priority, and its copy goes to the member that would be next") {
    Tasks t;
    t.members["c"].set_tags({{"priority", "5"}}, t.now());
    t.members["a"].set_tags({{"priority", "2"}}, t.now());
    t.advance(seconds(2));
    TaskSpec s = work("report");
    s.singleton = true;
    const TaskAnswer a = t.run("b", s);
    REQUIRE(a.status == 202);
    REQUIRE(a.task->owner == Name("c"));
    REQUIRE(t.holders(a) == std::vector<Name>{Name("a")});
}

TEST_CASE(
    "with coordinator_quorum a member without a majority neither assigns nor runs singletons") {
    for (const bool quorum : {false, true}) {
        TaskNodeConfig config;
        config.coordinator_quorum = quorum;
        config.min_replicas = 1;  // a alone may still store a task
        Tasks t(config);
        for (const char* gone : {"b", "c"}) {
            t.members.crash(gone);
            t.nodes.erase(gone);
        }
        t.live_for(seconds(20), to_any_of({"b", "c"}));
        INFO("quorum " << quorum);
        std::optional<TaskAnswer> placed, single;
        t["a"].submit(
            coordinated("k"), {}, [&](TaskAnswer x) { placed = std::move(x); }, 0, t.now());
        TaskSpec s = work("report");
        s.singleton = true;
        t["a"].submit(
            std::move(s), {}, [&](TaskAnswer x) { single = std::move(x); }, 0, t.now());
        t.live_for(seconds(1), to_any_of({"b", "c"}));
        REQUIRE(placed);
        REQUIRE(single);
        INFO(placed->code << ": " << placed->message);
        INFO(single->code << ": " << single->message);
        if (!quorum) {  // each side of a partition coordinates its own members
            REQUIRE(placed->status == 202);
            REQUIRE(single->status == 202);
            REQUIRE(t.started["a"].size() == 2);
        } else {  // a sees 1 of 3 alive
            REQUIRE(placed->status == 503);
            REQUIRE(placed->code == "no_quorum");
            REQUIRE(single->status == 503);
            REQUIRE_THAT(single->message, Catch::Contains("not a majority"));
            REQUIRE(t.started["a"].empty());
            REQUIRE(t["a"].stats().no_quorum >= 2);
        }
    }
}

TEST_CASE("a named coordinator-placed task sent again is the same task, found from any member") {
    Tasks t;
    TaskSpec s = coordinated("k");
    s.id = "nightly";
    const TaskAnswer first = t.run("c", s);
    REQUIRE(first.status == 202);
    const std::string owner = first.task->owner.str();
    // Sent again through another entry: found wherever the coordinator put it, not placed twice.
    const TaskAnswer again = t.run("b", s);
    REQUIRE(again.status == 202);
    REQUIRE(again.task->spec.id == first.task->spec.id);
    REQUIRE(again.task->owner == first.task->owner);
    size_t runs = 0;
    for (const char* n : kNames)
        runs += t.started[n].size();
    REQUIRE(runs == 1);
    for (const char* n : kNames) {
        std::optional<TaskAnswer> found;
        t[n].query(
            first.task->spec.id, {}, false, [&](TaskAnswer a) { found = std::move(a); }, 0,
            t.now());
        t.settle();
        REQUIRE(found);
        REQUIRE(found->status == 200);
        REQUIRE(found->task->owner == Name(owner));
    }
}

namespace {

// Frames to and from `member` vanish: a host that lost power, every packet to it dropped.
std::function<bool(const Tasks::Frame&)> silent(std::string member) {
    return [member](const Tasks::Frame& f) { return f.from == member || f.to == member; };
}

// `spec` submitted at `entry`; virtual time runs in 10 ms steps, every journal but those of
// `slow` committing at each, until the answer comes or `limit` passes. The answer and how long
// it took.
std::pair<std::optional<TaskAnswer>, Duration> timed(
    Tasks& t, const std::string& entry, TaskSpec spec, Duration limit,
    const std::function<bool(const Tasks::Frame&)>& lost, std::set<std::string> slow = {}) {
    std::optional<TaskAnswer> answer;
    const Time start = t.now();
    t[entry].submit(
        std::move(spec), {}, [&](TaskAnswer a) { answer = std::move(a); }, 0, t.now());
    while (!answer && t.now() - start < limit) {
        t.advance(milliseconds(10), lost);
        for (const char* n : kNames) {
            if (!slow.contains(n)) t.commit(n);
        }
    }
    return {std::move(answer), t.now() - start};
}

// Tasks of `key` through a, answered at once (so the measured timeout is the floor) and
// finished, so that b, the key's owner, is idle again and the router's choice.
void warm_up(Tasks& t, const std::string& key) {
    for (int i = 0; i < 4; ++i) {
        const TaskAnswer a = t.run("a", work(key));
        REQUIRE(a.status == 202);
        const std::string owner = a.task->owner.str();
        t[owner].finished(a.task->spec.id, TaskOutcome{}, t.now());
        t.settle();
    }
    REQUIRE(t["a"].stats().forwarded >= 1);
    t.advance(milliseconds(500));  // the loads spread: b is idle again in a's view
    REQUIRE(t["a"].lookup(key, t.now()).candidates[*t["a"].lookup(key, t.now()).choice].name ==
            Name("b"));
}

// How many times task `id` was started, on every member.
size_t runs(Tasks& t, const std::string& id) {
    size_t n = 0;
    for (const auto& [member, ids] : t.started)
        n += static_cast<size_t>(std::count(ids.begin(), ids.end(), id));
    return n;
}

}  // namespace

TEST_CASE("an owner gone silent costs the entry one measured forward timeout, not the ceiling") {
    Tasks t;
    const std::string key = t.key_owned_by("b");
    warm_up(t, key);
    const TaskNodeConfig config;
    REQUIRE(config.forward_timeout_min < config.forward_timeout);

    // b loses power. The first task tries it, waits the floor, and goes to another candidate,
    // whose copy may wait on b too, for half of that candidate's (measured) budget.
    auto [first, took] = timed(t, "a", work(key), config.forward_timeout, silent("b"));
    REQUIRE(first);
    CHECK(first->status == 202);
    CHECK(first->task->owner != Name("b"));
    CHECK(took < milliseconds(500));
    CHECK(t["a"].stats().forward_timeouts == 1);
    // Then b is quiet to the entry's router: the next tasks do not try it at all.
    for (int i = 0; i < 5; ++i) {
        auto [next, next_took] = timed(t, "a", work(key), config.forward_timeout, silent("b"));
        REQUIRE(next);
        CHECK(next->status == 202);
        CHECK(next_took < config.forward_timeout_min);
    }
    CHECK(t["a"].stats().forward_timeouts == 1);
}

TEST_CASE("with the timeout fixed at forward_timeout, a silent owner costs all of it") {
    // What the measured timeout replaces: the test above fails if it stops working.
    TaskNodeConfig config;
    config.forward_timeout_min = config.forward_timeout;
    Tasks t(config);
    const std::string key = t.key_owned_by("b");
    warm_up(t, key);
    auto [first, took] = timed(t, "a", work(key), seconds(5), silent("b"));
    REQUIRE(first);
    CHECK(first->status == 202);
    CHECK(took >= config.forward_timeout);
}

TEST_CASE("a slow owner whose answer comes after the entry gave up runs the task exactly once") {
    // b takes the task, stores it and runs it, but its answer reaches a only after a's
    // measured timeout: a tries the next candidate. Whichever it is, b's copy or b itself
    // refuses it there (held_elsewhere; copies_stale, then b, which owns the task and is up),
    // so the new owner has no copy and refuses, a answers 503, and b alone runs it.
    Tasks t;
    const std::string key = t.key_owned_by("b");
    warm_up(t, key);
    std::vector<Tasks::Frame> held;  // b's replies to a, delayed
    const auto delayed = [&](const Tasks::Frame& f) {
        if (f.from == "b" && f.to == "a" && std::holds_alternative<TaskReply>(f.message)) {
            held.push_back(f);
            return true;
        }
        return false;
    };
    // Unnamed: a named task is looked up first, and b's answer to that would be held too.
    const size_t b_ran = t.started["b"].size();
    auto [answer, took] = timed(t, "a", work(key), seconds(3), delayed);
    REQUIRE(answer);
    CHECK(took < milliseconds(500));
    CHECK(t["a"].stats().forward_timeouts == 1);
    REQUIRE(t.started["b"].size() == b_ran + 1);  // b took it, stored it and runs it
    const std::string id = t.started["b"].back();
    // Its late answers arrive; time runs on, copies are checked and repaired.
    for (Tasks::Frame& f : held)
        t["a"].on_message(Name("b"), Tasks::link_of("b"), std::move(f.message), t.now());
    t.advance(seconds(2));
    t.settle();
    REQUIRE(t["b"].board().find(id) != nullptr);
    CHECK(runs(t, id) == 1);
    CHECK(answer->status == 503);
}

TEST_CASE("an owner whose journal stores a task after its answer was due refuses it") {
    // b's commit takes longer than the three quarters of a's measured timeout that a gave it
    // as its budget: a has moved on, so b must not run the task. It refuses (late) and drops
    // its copy; the task runs once, where a placed it next, or nowhere and the client hears 503.
    Tasks t;
    const std::string key = t.key_owned_by("b");
    warm_up(t, key);
    auto spec = work(key);
    spec.id = "slow-disk";
    const std::string id = make_task_id(hash(key), "slow-disk");
    auto [answer, took] = timed(t, "a", spec, milliseconds(400), nullptr, {"b"});
    t.commit("b");  // its journal comes back
    t.settle();
    t.advance(seconds(2));
    t.settle();
    CHECK(t["b"].stats().late == 1);
    CHECK(t["b"].board().find(id) == nullptr);
    CHECK(t["b"].copies().find(id) == nullptr);
    CHECK(runs(t, id) <= 1);
    if (answer && answer->status == 202) CHECK(runs(t, id) == 1);
}

TEST_CASE("a copy from an owner that is up, of a task this node owns too, is refused") {
    // An entry gave up on b, which took the task all the same, and placed it here: b's copy
    // must not count a as its holder, or both would run it.
    Tasks t;
    const Task of_b = record_of(t.key_owned_by("a"), "both", "b");
    t["a"].on_message(Name("c"), Tasks::link_of("c"), TaskSubmit{1, of_b.spec, seconds(1)},
                      t.now());
    t.settle();
    REQUIRE(t["a"].board().find(of_b.spec.id) != nullptr);
    t.frames.clear();
    t["a"].on_message(Name("b"), Tasks::link_of("b"), TaskCopy{7, of_b, false}, t.now());
    const TaskReply& r = t.only_reply();
    CHECK(r.status != 200);
    CHECK(t["a"].stats().copies_stale == 1);
}

TEST_CASE(
    "an owner gone silent after its copy went out leaves the task to its copy, not to a retry") {
    // b took the task and its copy is stored on a member, but b went silent before answering:
    // a tries another candidate after its measured timeout. That one, or the member its own
    // copy goes to, meets b's record while b is up (held_elsewhere): the task is refused there,
    // the client hears 503, and no other member runs it: b's copy runs it if b is declared dead.
    Tasks t;
    const std::string key = t.key_owned_by("b");
    warm_up(t, key);
    bool cut = false;
    const auto lost = [&](const Tasks::Frame& f) { return cut && (f.from == "b" || f.to == "b"); };
    std::optional<TaskAnswer> answer;
    t["a"].submit(
        work(key), {}, [&](TaskAnswer a) { answer = std::move(a); }, 0, t.now());
    t.deliver(lost);  // the task to b, b's copy to its holder
    REQUIRE(!t.journal["b"].empty());
    const std::string id = t.journal["b"].back().id;
    std::string holder;
    for (const char* n : {"a", "c"}) {
        if (t[n].copies().find(id) != nullptr) holder = n;
    }
    REQUIRE(!holder.empty());
    t.commit(holder);
    t.deliver(lost);  // the holder's answer reaches b, whose own commit never comes
    cut = true;
    const Time start = t.now();
    while (!answer && t.now() - start < seconds(3)) {
        t.advance(milliseconds(10), lost);
        t.commit("a");
        t.commit("c");
    }
    REQUIRE(answer);
    CHECK(answer->status == 503);
    CHECK(answer->code == "held_elsewhere");
    CHECK(t.now() - start < milliseconds(500));
    t.advance(seconds(1), lost);
    t.settle();
    CHECK(runs(t, id) == 0);
    CHECK(t["a"].board().find(id) == nullptr);
    CHECK(t["c"].board().find(id) == nullptr);
    for (const char* n : {"a", "c"}) {  // any record of it left is b's copy
        if (const Task* held = t[n].copies().find(id)) CHECK(held->owner == Name("b"));
    }
}

TEST_CASE("a coordinator-placed task whose owner is silent goes elsewhere, the coordinator told") {
    Tasks t;
    // a coordinates; b goes silent; every task enters at c. Ties go round the members, so
    // one of the first tasks is assigned to b.
    for (int i = 0; i < 6; ++i)  // c measures its forwards: its timeouts come down to the floor
        REQUIRE(t.run("c", work("w" + std::to_string(i))).status == 202);
    const auto lost = silent("b");
    bool avoided = false;
    for (int i = 0; i < 3; ++i) {
        t.drain();
        t.frames.clear();
        auto [answer, took] = timed(t, "c", coordinated("k" + std::to_string(i)), seconds(5), lost);
        REQUIRE(answer);
        INFO(answer->code << ": " << answer->message);
        REQUIRE(answer->status == 202);
        REQUIRE(answer->task->owner != Name("b"));
        REQUIRE(took < TaskNodeConfig{}.forward_timeout / 2);
        avoided = avoided || t["c"].stats().forward_timeouts > 0;
    }
    REQUIRE(avoided);  // b was named, timed out, and the coordinator named another
}
