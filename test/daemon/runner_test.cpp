#include "daemon/runner.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <optional>

#include "daemon/temp_dir.hpp"
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

// A command that starts a child which would outlive it, writes the child's PID to `file` (in
// one write), then runs `then` (a shell command).
HandlerSpec with_child(const std::string& file, const std::string& then) {
    return exec({"/bin/sh", "-c", "sleep 1000 & echo $! > " + file + "; " + then});
}

// The PID in `file`, or 0 while there is none yet.
pid_t pid_in(const std::string& file) {
    std::ifstream in(file);
    pid_t pid = 0;
    in >> pid;
    return pid;
}

// True once `pid` has ended: no such process, or a zombie (killed, waiting only for whoever
// inherited it to collect it, which under some init processes takes seconds or never comes).
bool gone(pid_t pid) {
    if (kill(pid, 0) != 0) return errno == ESRCH;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t name_end = stat.rfind(')');  // the state follows the command's name
    return name_end != std::string::npos && stat.size() > name_end + 2 && stat[name_end + 2] == 'Z';
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
    test::TempDir d;
    const std::string file = d.path + "/child";
    Fixture f({{"hang", with_child(file, "wait")}});
    const uint64_t t0 = uv_hrtime();
    // Time enough for the shell to start its child first, even on a loaded machine.
    const auto o = f.run("hang", "{}", milliseconds(2000));
    REQUIRE(o.state == TaskState::timed_out);
    REQUIRE(uv_hrtime() - t0 < 10'000'000'000u);
    const pid_t child = pid_in(file);
    REQUIRE(child > 0);
    REQUIRE(f.loop.run_until([&] { return gone(child); }, 20'000));
}

TEST_CASE("exec output over the cap fails the task instead of filling memory") {
    RunnerLimits l;
    l.output_bytes_max = 1000;
    Fixture f({{"yes", exec({"/usr/bin/yes"})}}, l);
    const auto o = f.run("yes", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("output_too_large") != std::string::npos);
}

TEST_CASE("exec output over the cap kills the whole process group") {
    // The child starts before the flood, so it is there when the cap is passed; the command
    // itself never ends by itself.
    test::TempDir d;
    const std::string file = d.path + "/child";
    RunnerLimits l;
    l.output_bytes_max = 1000;
    Fixture f({{"flood", with_child(file, "exec yes")}}, l);
    const auto o = f.run("flood", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("output_too_large") != std::string::npos);
    const pid_t child = pid_in(file);
    REQUIRE(child > 0);
    REQUIRE(f.loop.run_until([&] { return gone(child); }, 20'000));
}

TEST_CASE("a command that cannot start fails with the reason") {
    Fixture f({{"nope", exec({"/nonexistent/tool"})}});
    const auto o = f.run("nope", "{}");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("could not start /nonexistent/tool") != std::string::npos);
}

TEST_CASE("stopping a running command ends it at once, with every process it started") {
    test::TempDir d;
    const std::string file = d.path + "/child";
    Fixture f({{"hang", with_child(file, "wait")}});
    std::optional<TaskOutcome> out;
    f.runner->start(TaskSpec{"x", "k", "hang", "{}", seconds(60)},
                    [&](TaskOutcome o) { out = std::move(o); });
    pid_t child = 0;
    REQUIRE(f.loop.run_until([&] { return (child = pid_in(file)) > 0; }, 10'000));
    REQUIRE_FALSE(gone(child));
    f.runner->stop("x");
    REQUIRE(f.loop.run_until([&] { return out.has_value(); }, 10'000));
    REQUIRE(out->state == TaskState::failed);
    REQUIRE(f.loop.run_until([&] { return gone(child); }, 20'000));
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
