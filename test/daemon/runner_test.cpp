#include "daemon/runner.hpp"

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

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
        runner->start(TaskSpec{id, "k", type, payload, timeout, {}},
                      [this, id](TaskOutcome o) { outcomes[id] = std::move(o); });
        REQUIRE_FALSE(outcomes[id]);  // never inside start
        REQUIRE(loop.run_until([&] { return outcomes[id].has_value(); }, 20'000));
        REQUIRE(runner->running() == 0);
        return *outcomes[id];
    }
};

HandlerSpec exec(std::vector<std::string> argv) {
    return HandlerSpec::command(std::move(argv));
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
    f.runner->start(TaskSpec{"x", "k", "hang", "{}", seconds(60), {}},
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
    Fixture f({{"hook", HandlerSpec::post_to("http://127.0.0.1:9/run")}});
    REQUIRE(f.run("hook", R"({"x":1})").result == R"({"x":1})");
    const auto o = f.run("hook", R"("fail")");
    REQUIRE(o.state == TaskState::failed);
    REQUIRE(o.error.find("500") != std::string::npos);
}

TEST_CASE("handler specs name what to fix") {
    REQUIRE(check_handler("x", exec({})).error().message.find("argv") != std::string::npos);
    REQUIRE_FALSE(check_handler("x", HandlerSpec::post_to("ftp://a/b")));
    REQUIRE_FALSE(check_handler("x", HandlerSpec::post_to("http://localhost/")));
    REQUIRE(check_handler("x", HandlerSpec::post_to("http://127.0.0.1:80/a")));
    REQUIRE_FALSE(check_handler("x", HandlerSpec::built_in("dance")));
}

TEST_CASE("an exec command gets only the environment its handler allows") {
    setenv("CHORUS_TEST_SECRET", "do-not-pass", 1);
    setenv("CHORUS_TEST_ALLOWED", "pass-me", 1);
    HandlerSpec plain = exec({"/usr/bin/env"});
    HandlerSpec allowing = exec({"/usr/bin/env"});
    allowing.env = {"CHORUS_TEST_ALLOWED", "CHORUS_TASK_ID", "NOT_SET_ANYWHERE"};
    Fixture f({{"plain", plain}, {"allowing", allowing}});
    const std::string by_default = f.run("plain", "{}").result;
    CHECK_THAT(by_default, Catch::Contains("CHORUS_TASK_ID=t0") &&
                               Catch::Contains("CHORUS_TASK_KEY=k") && Catch::Contains("PATH=") &&
                               !Catch::Contains("do-not-pass") && !Catch::Contains("pass-me"));
    const std::string allowed = f.run("allowing", "{}").result;
    CHECK_THAT(allowed, Catch::Contains("CHORUS_TEST_ALLOWED=pass-me") &&
                            !Catch::Contains("do-not-pass") && !Catch::Contains("PATH=") &&
                            !Catch::Contains("NOT_SET_ANYWHERE"));
    // The task's own id cannot be overridden from the agent's environment.
    CHECK_THAT(allowed, Catch::Contains("CHORUS_TASK_ID=t1"));
    unsetenv("CHORUS_TEST_SECRET");
    unsetenv("CHORUS_TEST_ALLOWED");
}

TEST_CASE("an exec command runs in its handler's directory, under its limits") {
    test::TempDir dir;
    HandlerSpec where = exec({"/bin/pwd"});
    where.dir = dir.path;
    HandlerSpec limited =
        exec({"/bin/bash", "-c", "echo $(ulimit -t) $(ulimit -n) $(ulimit -u) $(ulimit -v)"});
    limited.limits.cpu_s = 7;
    limited.limits.as_bytes = 512u << 20;
    limited.limits.nofile = 64;
    limited.limits.nproc = 4096;
    HandlerSpec spinning = exec({"/bin/sh", "-c", "while :; do :; done"});
    spinning.limits.cpu_s = 1;
    HandlerSpec opening = exec({"/bin/sh", "-c", "exec 20</dev/null && echo opened"});
    opening.limits.nofile = 16;
    Fixture f({{"where", where}, {"limited", limited}, {"spin", spinning}, {"open", opening}});
    CHECK(f.run("where", "{}").result == nlohmann::json(dir.path + "\n").dump());
    CHECK(f.run("limited", "{}").result == nlohmann::json("7 64 4096 524288\n").dump());
    // Over its CPU seconds the kernel ends it (SIGXCPU, then SIGKILL), long before its timeout.
    const TaskOutcome spun = f.run("spin", "{}", seconds(60));
    CHECK(spun.state == TaskState::failed);
    CHECK_THAT(spun.error, Catch::Contains("signal") || Catch::Contains("exit status"));
    // A file descriptor past its limit cannot be opened.
    const TaskOutcome opened = f.run("open", "{}");
    CHECK(opened.state == TaskState::failed);
}

TEST_CASE("an exec command runs as its handler's user and group, with no other groups") {
    if (geteuid() != 0) {
        WARN("not run: switching users takes root");
        return;
    }
    HandlerSpec as_nobody = exec({"/usr/bin/id"});
    as_nobody.uid = resolve_user("nobody").value();
    as_nobody.gid = resolve_group("nogroup").value();
    Fixture f({{"id", as_nobody}});
    const std::string out = nlohmann::json::parse(f.run("id", "{}").result).get<std::string>();
    CHECK_THAT(out,
               Catch::StartsWith(fmt::format("uid={}(nobody) gid={}(nogroup) groups={}(nogroup)",
                                             *as_nobody.uid, *as_nobody.gid, *as_nobody.gid)));
}

TEST_CASE("under root, an exec handler must say which user runs it") {
    const HandlerSpec unnamed = exec({"/bin/true"});
    HandlerSpec as_root = exec({"/bin/true"});
    as_root.uid = 0;
    HandlerSpec as_nobody = exec({"/bin/true"});
    as_nobody.uid = resolve_user("nobody").value();
    const auto refused = check_exec_user("job", unnamed, 0);
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().message,
               Catch::Contains("handlers.job") && Catch::Contains("runs as root"));
    CHECK(check_exec_user("job", as_root, 0));  // said explicitly
    CHECK(check_exec_user("job", as_nobody, 0));
    // Not root: its own user only, since switching takes root.
    CHECK(check_exec_user("job", unnamed, 1000));
    CHECK_FALSE(check_exec_user("job", as_nobody, 1000));
    // Built-ins and http handlers run nothing.
    CHECK(check_exec_user("echo", default_handlers().at("echo"), 0));
}

TEST_CASE("users and groups resolve by name or number, and unknown ones are named") {
    CHECK(resolve_user("root").value() == 0);
    CHECK(resolve_user("4242").value() == 4242);
    CHECK(resolve_group("root").value() == 0);
    const auto missing = resolve_user("no-such-user-here");
    REQUIRE_FALSE(missing);
    CHECK_THAT(missing.error().message, Catch::Contains("no-such-user-here"));
    CHECK_FALSE(resolve_group("no-such-group-here"));
    CHECK(primary_group(0) == 0u);
    HandlerSpec nowhere = exec({"/bin/true"});
    nowhere.dir = "/no/such/dir";
    CHECK_THAT(check_handler("x", nowhere).error().message, Catch::Contains("/no/such/dir"));
    nowhere.dir = "relative";
    CHECK_FALSE(check_handler("x", nowhere));
}

TEST_CASE("an exec command's stdin is a pipe, so bash does not take itself for an ssh session") {
    // With a socket on stdin and no SHLVL, bash sources ~/.bashrc before every command.
    Fixture f({{"kind", exec({"/bin/sh", "-c", "test -p /dev/stdin && cat"})}});
    const TaskOutcome o = f.run("kind", R"({"x":1})");
    CHECK(o.state == TaskState::succeeded);
    CHECK(o.result == R"({"x":1})");
}
