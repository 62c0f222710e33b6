#include "daemon/runner.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <optional>

#include "net/loop.hpp"

using namespace chorus;
using namespace chorus::daemon;

namespace {

struct Fixture {
    test::TestLoop loop;
    std::unique_ptr<Runner> runner;
    std::map<std::string, std::optional<TaskOutcome>> outcomes;

    explicit Fixture(std::map<std::string, HandlerSpec> extra = {}, RunnerLimits limits = {}) {
        std::signal(SIGPIPE, SIG_IGN);
        auto handlers = default_handlers();
        handlers.merge(extra);
        runner = std::make_unique<Runner>(
            loop.get(), handlers, limits,
            [](const std::string&, std::string body, Duration, size_t, auto done) {
                done(std::pair<int, std::string>{body == "\"fail\"" ? 500 : 200, body});
            });
    }

    TaskOutcome run(const std::string& type, const std::string& payload,
                    Duration timeout = seconds(20)) {
        const std::string id = "t" + std::to_string(outcomes.size());
        outcomes[id] = std::nullopt;
        runner->start(TaskSpec{id, "k", type, payload, timeout},
                      [this, id](TaskOutcome o) { outcomes[id] = std::move(o); });
        REQUIRE_FALSE(outcomes[id]);  // never inside start
        REQUIRE(loop.run_until([&] { return outcomes[id].has_value(); }, 20'000));
        REQUIRE(runner->running() == 0);
        return *outcomes[id];
    }
};

HandlerSpec exec(std::vector<std::string> argv) {
    return HandlerSpec{HandlerSpec::Kind::exec, "", std::move(argv), ""};
}

}  // namespace

TEST_CASE("echo returns the payload and sleep waits the asked time") {
    Fixture f;
    const auto echo = f.run("echo", R"({"a":[1,2]})");
    REQUIRE(echo.state == TaskState::succeeded);
    REQUIRE(echo.result == R"({"a":[1,2]})");

    const uint64_t t0 = uv_hrtime();
    const auto sleep = f.run("sleep", R"({"ms":120})");
    // libuv's timers run on the loop's cached clock, which may lag the real one by a few ms.
    REQUIRE(uv_hrtime() - t0 >= 100'000'000u);
    REQUIRE(sleep.state == TaskState::succeeded);
    REQUIRE(sleep.result == R"({"slept_ms":120})");

    const auto too_long = f.run("sleep", R"({"ms":5000})", milliseconds(50));
    REQUIRE(too_long.state == TaskState::timed_out);

    const auto bad = f.run("sleep", R"({"ms":"soon"})");
    REQUIRE(bad.state == TaskState::failed);
    REQUIRE(bad.error.find(R"({"ms": N})") != std::string::npos);
}

TEST_CASE("exec passes the payload on stdin and takes stdout as the result") {
    Fixture f({{"cat", exec({"/bin/cat"})},
               {"text", exec({"/bin/sh", "-c", "echo hello $CHORUS_TASK_KEY"})}});
    const auto json = f.run("cat", R"({"n":7})");
    REQUIRE(json.state == TaskState::succeeded);
    REQUIRE(json.result == R"({"n":7})");
    REQUIRE(json.exit_code == 0);
    const auto text = f.run("text", "null");
    REQUIRE(text.result == R"("hello k\n")");
}

TEST_CASE("exec reports a non-zero exit with its code and the tail of stderr") {
    Fixture f({{"fail", exec({"/bin/sh", "-c", "echo oops >&2; exit 3"})}});
    const auto o = f.run("fail", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.exit_code == 3);
    REQUIRE(o.error.find("exit status 3") != std::string::npos);
    REQUIRE(o.error.find("oops") != std::string::npos);
}

TEST_CASE("exec on timeout kills the whole process group") {
    // The shell starts a child that would outlive it and keep the pipes open.
    Fixture f({{"hang", exec({"/bin/sh", "-c", "sleep 30 & echo $! >&2; wait"})}});
    const uint64_t t0 = uv_hrtime();
    const auto o = f.run("hang", "{}", milliseconds(300));
    REQUIRE(o.state == TaskState::timed_out);
    REQUIRE(uv_hrtime() - t0 < 10'000'000'000u);
}

TEST_CASE("exec output over the cap fails the task instead of filling memory") {
    RunnerLimits l;
    l.output_bytes_max = 1000;
    Fixture f({{"yes", exec({"/usr/bin/yes"})}}, l);
    const auto o = f.run("yes", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("output_too_large") != std::string::npos);
}

TEST_CASE("a command that cannot start fails with the reason") {
    Fixture f({{"nope", exec({"/nonexistent/tool"})}});
    const auto o = f.run("nope", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("could not start /nonexistent/tool") != std::string::npos);
}

TEST_CASE("stopping a running command ends it at once") {
    Fixture f({{"hang", exec({"/bin/sleep", "30"})}});
    std::optional<TaskOutcome> out;
    f.runner->start(TaskSpec{"x", "k", "hang", "{}", seconds(60)},
                    [&](TaskOutcome o) { out = std::move(o); });
    f.loop.run_until([] { return false; }, 100);
    f.runner->stop("x");
    REQUIRE(f.loop.run_until([&] { return out.has_value(); }, 10'000));
    REQUIRE(out->state == TaskState::failed);
}

TEST_CASE("http posts the payload and takes a 2xx body as the result") {
    Fixture f({{"hook", HandlerSpec{HandlerSpec::Kind::http, "", {}, "http://127.0.0.1:9/run"}}});
    REQUIRE(f.run("hook", R"({"x":1})").result == R"({"x":1})");
    const auto o = f.run("hook", R"("fail")");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("500") != std::string::npos);
}

TEST_CASE("handler specs name what to fix") {
    REQUIRE(check_handler("x", exec({})).error().message.find("argv") != std::string::npos);
    REQUIRE_FALSE(check_handler("x", HandlerSpec{HandlerSpec::Kind::http, "", {}, "ftp://a/b"}));
    REQUIRE_FALSE(
        check_handler("x", HandlerSpec{HandlerSpec::Kind::http, "", {}, "http://localhost/"}));
    REQUIRE(
        check_handler("x", HandlerSpec{HandlerSpec::Kind::http, "", {}, "http://127.0.0.1:80/a"}));
    REQUIRE_FALSE(check_handler("x", HandlerSpec{HandlerSpec::Kind::builtin, "dance", {}, ""}));
}
