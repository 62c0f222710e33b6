#include "core/task.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {

Time at(int64_t ms) {
    return Time{} + milliseconds(ms);
}

TaskSpec spec(std::string id, std::string payload = "{}") {
    return TaskSpec{std::move(id), "key", "echo", std::move(payload), seconds(10), {}};
}

TaskLimits small(uint32_t capacity, uint32_t queue_max) {
    TaskLimits l;
    l.capacity = capacity;
    l.queue_max = queue_max;
    return l;
}

}  // namespace

TEST_CASE("a task id carries its key's hash and nothing else parses as one") {
    const std::string id = make_task_id(0x0123456789abcdefULL, 42);
    REQUIRE(id == "0123456789abcdef-000000000000002a");
    REQUIRE(task_key_hash(id) == 0x0123456789abcdefULL);
    // A client may name its task; the id still leads with the key's hash.
    REQUIRE(make_task_id(0xabcULL, "order-17.v2") == "0000000000000abc-order-17.v2");
    REQUIRE(task_key_hash("0000000000000abc-order-17.v2") == 0xabcULL);
    REQUIRE(valid_task_name(std::string(kTaskNameMax, 'x')));
    REQUIRE_FALSE(valid_task_name(std::string(kTaskNameMax + 1, 'x')));
    for (const char* bad :
         {"", "0123456789abcdef", "0123456789abcdef_000000000000002a",
          "0123456789ABCDEF-000000000000002a", "0123456789abcdef-",
          "0123456789abcdefx000000000000002a", "../../etc/passwd", "0123456789abcdef-a/b",
          "0123456789abcdef-a b", "0123456789abcdef-%2e"}) {
        INFO(bad);
        REQUIRE_FALSE(task_key_hash(bad));
    }
}

TEST_CASE("tasks run in arrival order, at most capacity at once, and the rest wait") {
    TaskBoard b(small(2, 10));
    for (const char* id : {"a", "b", "c"})
        REQUIRE(b.submit(spec(id), Name("n1"), at(0)).ok());
    REQUIRE(b.load_milli() == 1500);
    REQUIRE(b.start_ready(at(1)) == std::vector<std::string>{"a", "b"});
    REQUIRE(b.find("a")->state == TaskState::running);
    REQUIRE(b.find("a")->attempts == 1);
    REQUIRE(b.find("c")->state == TaskState::queued);
    REQUIRE(b.start_ready(at(2)).empty());

    REQUIRE(b.finish("a", TaskOutcome{TaskState::succeeded, "{\"x\":1}", "", 0}, at(3)));
    REQUIRE(b.find("a")->state == TaskState::succeeded);
    REQUIRE(b.find("a")->result == "{\"x\":1}");
    REQUIRE(b.find("a")->finished == at(3));
    REQUIRE(b.start_ready(at(4)) == std::vector<std::string>{"c"});
    REQUIRE(b.load_milli() == 1000);
    REQUIRE(b.stats().succeeded == 1);
}

TEST_CASE("a full node refuses and changes nothing") {
    TaskBoard b(small(1, 1));
    REQUIRE(b.submit(spec("a"), Name("n1"), at(0)).ok());
    REQUIRE(b.submit(spec("b"), Name("n1"), at(0)).ok());
    const auto refused = b.submit(spec("c"), Name("n1"), at(0));
    REQUIRE_FALSE(refused.ok());
    REQUIRE(refused.error().code == "full");
    REQUIRE(b.find("c") == nullptr);
    REQUIRE(b.stats().refused == 1);
    REQUIRE(b.stats().accepted == 2);
}

TEST_CASE("an id that exists is refused, not replaced") {
    TaskBoard b(small(1, 1));
    REQUIRE(b.submit(spec("a", "1"), Name("n1"), at(0)).ok());
    const auto again = b.submit(spec("a", "2"), Name("n1"), at(0));
    REQUIRE(again.error().code == "task_exists");
    REQUIRE(b.find("a")->spec.payload == "1");
}

TEST_CASE("cancelling a queued task ends it, and a running one keeps its slot until it stops") {
    TaskBoard b(small(1, 5));
    REQUIRE(b.submit(spec("run"), Name("n1"), at(0)).ok());
    REQUIRE(b.submit(spec("wait"), Name("n1"), at(0)).ok());
    REQUIRE(b.start_ready(at(0)) == std::vector<std::string>{"run"});

    REQUIRE(b.cancel("wait", at(1)) == TaskBoard::Cancel::cancelled);
    REQUIRE(b.find("wait")->state == TaskState::cancelled);
    REQUIRE(b.queued() == 0);

    REQUIRE(b.cancel("run", at(2)) == TaskBoard::Cancel::running);
    REQUIRE(b.find("run")->state == TaskState::cancelled);
    REQUIRE(b.running() == 1);  // the handler has not stopped yet
    REQUIRE(b.submit(spec("next"), Name("n1"), at(2)).ok());
    REQUIRE(b.start_ready(at(2)).empty());
    // The killed handler reports; the outcome does not overwrite the cancellation.
    REQUIRE_FALSE(b.finish("run", TaskOutcome{TaskState::failed, "", "killed", 9}, at(3)));
    REQUIRE(b.find("run")->state == TaskState::cancelled);
    REQUIRE(b.start_ready(at(3)) == std::vector<std::string>{"next"});

    REQUIRE(b.cancel("run", at(4)) == TaskBoard::Cancel::already_finished);
    REQUIRE(b.cancel("nope", at(4)) == TaskBoard::Cancel::not_found);
    REQUIRE(b.stats().cancelled == 2);
}

TEST_CASE("an outcome for a task that is not running is ignored") {
    TaskBoard b(small(1, 5));
    REQUIRE(b.submit(spec("a"), Name("n1"), at(0)).ok());
    REQUIRE_FALSE(b.finish("a", TaskOutcome{}, at(1)));  // still queued
    REQUIRE_FALSE(b.finish("zzz", TaskOutcome{}, at(1)));
    REQUIRE(b.find("a")->state == TaskState::queued);
}

TEST_CASE("finished tasks are kept within the count, byte and age limits, oldest dropped first") {
    TaskLimits l = small(4, 10);
    l.results_max = 2;
    l.results_ttl = seconds(60);
    TaskBoard b(l);
    for (const char* id : {"a", "b", "c"}) {
        REQUIRE(b.submit(spec(id), Name("n1"), at(0)).ok());
    }
    REQUIRE(b.start_ready(at(0)).size() == 3);
    for (const char* id : {"a", "b", "c"}) {
        REQUIRE(b.finish(id, TaskOutcome{}, at(1)));
    }
    REQUIRE(b.find("a") == nullptr);
    REQUIRE(b.find("b") != nullptr);
    REQUIRE(b.find("c") != nullptr);
    REQUIRE(b.stats().evicted == 1);

    b.expire(at(1) + seconds(59));
    REQUIRE(b.kept() == 2);
    b.expire(at(1) + seconds(61));
    REQUIRE(b.kept() == 0);

    TaskLimits bytes = small(1, 1);
    bytes.results_bytes_max = 4096;
    TaskBoard c(bytes);
    for (int i = 0; i < 4; ++i) {
        const std::string id = std::to_string(i);
        REQUIRE(c.submit(spec(id, std::string(1500, ' ')), Name("n1"), at(0)).ok());
        REQUIRE(c.start_ready(at(0)).size() == 1);
        REQUIRE(c.finish(id, TaskOutcome{}, at(0)));
    }
    REQUIRE(c.kept() == 2);  // two 1.5 kB records fit in 4 kB, a third does not
    REQUIRE(c.find("3") != nullptr);
}

TEST_CASE("task limits name the rule a bad value breaks") {
    TaskLimits l;
    REQUIRE(l.validate().ok());
    l.capacity = 0;
    REQUIRE(l.validate().error().message.starts_with("capacity"));
    l = TaskLimits{};
    l.timeout_default = l.timeout_max + seconds(1);
    REQUIRE(l.validate().error().message.starts_with("timeout_default"));
}

TEST_CASE("recovered tasks come back queued or finished, beyond the limits if need be") {
    TaskBoard b(small(1, 0));
    Task running;
    running.spec = spec("r");
    running.state = TaskState::running;
    running.started = at(5);
    running.attempts = 1;
    Task queued;
    queued.spec = spec("q");
    Task done;
    done.spec = spec("d");
    done.state = TaskState::succeeded;
    done.result.assign(1, '1');  // (assigning a literal trips GCC 12's -Wrestrict false positive)
    done.finished = at(9);
    for (const Task& t : {running, queued, done})
        b.restore(t, at(10));
    REQUIRE(b.kept() == 3);
    REQUIRE(b.queued() == 2);  // over capacity + queue_max: nothing recovered is dropped
    REQUIRE(b.find("r")->state == TaskState::queued);
    REQUIRE_FALSE(b.find("r")->started);
    REQUIRE(b.find("d")->result == "1");
    REQUIRE(b.start_ready(at(11)) == std::vector<std::string>{"r"});
    REQUIRE(b.find("r")->attempts == 2);  // it runs a second time
}

TEST_CASE("the board tells which finished tasks its retention dropped") {
    TaskLimits l = small(1, 1);
    l.results_max = 1;
    TaskBoard b(l);
    for (const char* id : {"a", "b"}) {
        REQUIRE(b.submit(spec(id), Name("n1"), at(0)).ok());
        REQUIRE(b.start_ready(at(0)).size() == 1);
        REQUIRE(b.finish(id, TaskOutcome{}, at(1)));
    }
    REQUIRE(b.take_evicted() == std::vector<std::string>{"a"});
    REQUIRE(b.take_evicted().empty());
}
