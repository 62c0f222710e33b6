#include "core/copies.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {

Task copy(const std::string& id, TaskState state = TaskState::queued, size_t payload = 0) {
    Task t;
    t.spec = TaskSpec{id, "k", "echo", std::string(payload, 'x'), seconds(1), {}};
    t.state = state;
    t.owner = Name("owner");
    return t;
}

}  // namespace

TEST_CASE("unfinished copies beyond the count limit are refused, updates never are") {
    CopyStore s(CopyLimits{.unfinished_max = 2,
                           .unfinished_bytes_max = 1 << 20,
                           .finished_max = 10,
                           .finished_bytes_max = 1 << 20});
    REQUIRE(s.put(copy("a")).ok());
    REQUIRE(s.put(copy("b")).ok());
    const auto refused = s.put(copy("c"));
    REQUIRE_FALSE(refused.ok());
    REQUIRE(refused.error().code == "copies_full");
    REQUIRE(s.find("c") == nullptr);
    REQUIRE(s.put(copy("a", TaskState::running)).ok());  // an update of a copy held
    REQUIRE(s.unfinished() == 2);
    // A copy that finished frees its place.
    REQUIRE(s.put(copy("a", TaskState::succeeded)).ok());
    REQUIRE(s.unfinished() == 1);
    REQUIRE(s.put(copy("c")).ok());
    // Finished copies come in whatever the unfinished count: they only replace.
    REQUIRE(s.put(copy("d", TaskState::failed)).ok());
    REQUIRE(s.size() == 4);
}

TEST_CASE("unfinished copies beyond the byte limit are refused") {
    const size_t one = copy("a", TaskState::queued, 1000).bytes();
    CopyStore s(CopyLimits{.unfinished_max = 100,
                           .unfinished_bytes_max = 2 * one + 10,
                           .finished_max = 10,
                           .finished_bytes_max = 1 << 20});
    REQUIRE(s.put(copy("a", TaskState::queued, 1000)).ok());
    REQUIRE(s.put(copy("b", TaskState::queued, 1000)).ok());
    REQUIRE_FALSE(s.put(copy("c", TaskState::queued, 1000)).ok());
    REQUIRE(s.unfinished_bytes() == 2 * one);
    REQUIRE(s.take("a").has_value());
    REQUIRE(s.unfinished_bytes() == one);
    REQUIRE(s.put(copy("c", TaskState::queued, 1000)).ok());
}

TEST_CASE("finished copies are kept within their count and bytes, the oldest going first") {
    const size_t one = copy("a", TaskState::succeeded, 500).bytes();
    CopyStore s(CopyLimits{.unfinished_max = 100,
                           .unfinished_bytes_max = 1 << 20,
                           .finished_max = 3,
                           .finished_bytes_max = 1 << 20});
    std::vector<std::string> dropped;
    for (const char* id : {"a", "b", "c", "d", "e"}) {
        auto r = s.put(copy(id, TaskState::succeeded, 500));
        REQUIRE(r.ok());
        dropped.insert(dropped.end(), r->begin(), r->end());
    }
    REQUIRE(dropped == std::vector<std::string>{"a", "b"});
    REQUIRE(s.size() == 3);
    CopyStore small(CopyLimits{.unfinished_max = 100,
                               .unfinished_bytes_max = 1 << 20,
                               .finished_max = 100,
                               .finished_bytes_max = 2 * one});
    REQUIRE(small.put(copy("a", TaskState::succeeded, 500)).ok());
    REQUIRE(small.put(copy("b", TaskState::succeeded, 500)).ok());
    REQUIRE(*small.put(copy("c", TaskState::succeeded, 500)) == std::vector<std::string>{"a"});
    REQUIRE(small.finished_bytes() == 2 * one);
}

TEST_CASE("copies read back from the journal are kept whatever the limits") {
    CopyStore s(CopyLimits{.unfinished_max = 1,
                           .unfinished_bytes_max = 1 << 20,
                           .finished_max = 1,
                           .finished_bytes_max = 1 << 20});
    for (const char* id : {"a", "b", "c"})
        s.restore(copy(id));
    REQUIRE(s.unfinished() == 3);
    REQUIRE_FALSE(s.put(copy("d")).ok());
}

TEST_CASE("the holder of an unfinished copy acts on its owner's answer") {
    const Name owner("owner");
    Task running = copy("t1", TaskState::running);
    Task done = copy("t1", TaskState::succeeded);
    Task elsewhere = copy("t1", TaskState::succeeded);
    elsewhere.owner = Name("other");  // a copy the asked member holds for someone else
    struct Row {
        uint16_t status;
        const char* code;
        std::optional<Task> task;
        CopyCheck then;
    };
    const Row rows[] = {
        {200, "", running, CopyCheck::wait},
        {200, "", done, CopyCheck::update},
        {200, "", elsewhere, CopyCheck::wait},
        {404, "unknown_task", std::nullopt, CopyCheck::take_over},
        {410, "task_declined", std::nullopt, CopyCheck::drop},
        {503, "journal_unavailable", std::nullopt, CopyCheck::wait},
        {410, "something_else", std::nullopt, CopyCheck::wait},
    };
    for (const Row& r : rows) {
        CAPTURE(r.status, r.code);
        REQUIRE(judge_copy(owner, r.status, r.code, r.task) == r.then);
    }
}
