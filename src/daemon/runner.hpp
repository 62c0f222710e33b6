// Runs tasks' handlers on the loop (ARCHITECTURE.md, "Tasks"): the built-ins, external commands and
// local HTTP endpoints. The task board decides what runs; the runner only runs it and reports how
// it ended, exactly once per start, on the loop's thread.
//
//   builtin echo    the result is the payload
//   builtin sleep   payload {"ms": N}: waits N ms; the result is {"slept_ms": N}
//   exec            argv (never a shell string), the payload as JSON on stdin; stdout is the
//                   result (JSON if it parses, else a JSON string). A non-zero exit fails the
//                   task with the exit code and the tail of stderr. The command runs in its
//                   own process group, and the whole group is killed on timeout, on cancel,
//                   when stdout passes the output cap, and once the command itself has exited.
//   http            POST the payload to a local URL; a 2xx body is the result, anything else
//                   fails the task.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/task.hpp"
#include "net/endpoint.hpp"
#include "net/handle.hpp"

namespace chorus::daemon {

// What an exec handler's command may use, set with prlimit(1) before it starts (util-linux:
// the limits apply from its first instruction, and to whatever it starts). 0 leaves the
// agent's own limit.
struct ExecLimits {
    uint64_t cpu_s = 0;     // RLIMIT_CPU: seconds of CPU time, then it is killed
    uint64_t as_bytes = 0;  // RLIMIT_AS: address space
    uint64_t nofile = 0;    // RLIMIT_NOFILE: open files
    uint64_t nproc = 0;     // RLIMIT_NPROC: processes of its user
    bool any() const { return cpu_s != 0 || as_bytes != 0 || nofile != 0 || nproc != 0; }
};

// util-linux's prlimit, which runs a command under the limits it is given.
inline constexpr const char* kPrlimit = "/usr/bin/prlimit";

// The environment variables an exec handler's command gets from the agent's when its handler
// names none: enough to find programs and read text, and nothing the agent was given.
std::vector<std::string> default_exec_env();

struct HandlerSpec {
    enum class Kind : uint8_t { builtin, exec, http };
    Kind kind = Kind::builtin;
    std::string builtin;            // echo, sleep
    std::vector<std::string> argv;  // exec: argv[0] is the program (a path, or found in PATH)
    std::string url;                // http: http://ip:port/path
    // exec, least privilege: the user and group it runs as (names or numbers, resolved into
    // uid and gid when the config is read; unset: the agent's), the agent's environment
    // variables it gets (CHORUS_TASK_ID and CHORUS_TASK_KEY always), its working directory
    // (empty: the agent's) and its resource limits.
    std::string user, group;
    std::optional<uint32_t> uid, gid;
    std::vector<std::string> env = default_exec_env();
    std::string dir;
    ExecLimits limits;

    static HandlerSpec built_in(std::string name);
    static HandlerSpec command(std::vector<std::string> argv);
    static HandlerSpec post_to(std::string url);
};

// Reads a user or group, by name or number, into its id; errors say which was not found.
Result<uint32_t> resolve_user(const std::string& user);
Result<uint32_t> resolve_group(const std::string& group);
// The primary group of a user id, for a handler that names a user and no group.
std::optional<uint32_t> primary_group(uint32_t uid);

// Handler names to specs; `echo` and `sleep` are there with no configuration at all.
std::map<std::string, HandlerSpec> default_handlers();
// Why an exec handler's program cannot run ("does not exist", "is not on PATH (...)"), or
// nothing: a path must name an executable file; a bare name must be one on the agent's PATH.
std::optional<std::string> missing_program(const std::string& program);
// Checks a spec (argv non-empty with a program that is there, URL shape, a known built-in, an
// absolute working directory that is there); the error names what to fix.
Status check_handler(const std::string& name, const HandlerSpec& spec);
// Who an exec handler's command may run as, for an agent running as `euid`. Under root (0) it
// must name its user: running commands as root takes saying "user": "root". Otherwise it may
// name no user or group but the agent's own (switching takes root).
Status check_exec_user(const std::string& name, const HandlerSpec& spec, uint32_t euid);

struct RunnerLimits {
    size_t output_bytes_max = 1u << 20;  // stdout or an HTTP body; beyond it the task fails
    size_t stderr_tail_bytes = 4096;     // kept for a failed command's error message
};

// POSTs `body` to an http://ip:port/path URL and calls `done` once with (status, body) or an
// error. Injected: the HTTP client lives a layer above the daemon.
using HttpPost = std::function<void(const std::string& url, std::string body, Duration timeout,
                                    size_t body_bytes_max,
                                    std::function<void(Result<std::pair<int, std::string>>)> done)>;

class Runner {
  public:
    Runner(uv_loop_t* loop, std::map<std::string, HandlerSpec> handlers, RunnerLimits limits,
           HttpPost http_post);
    ~Runner();
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;

    bool knows(std::string_view type) const { return handlers_.contains(std::string(type)); }
    std::vector<std::string> types() const;
    // Starts the task's handler; `done` runs once, later, on the loop (never inside start).
    void start(const TaskSpec& spec, std::function<void(TaskOutcome)> done);
    // Stops a running task: its process group is killed, a sleep or request abandoned. Its
    // `done` still runs, with a failure.
    void stop(const std::string& id);
    size_t running() const { return runs_.size(); }

    struct Run;  // one execution; defined in runner.cpp

  private:
    friend struct Run;
    void complete(const std::string& id, TaskOutcome outcome);

    uv_loop_t* loop_;
    std::map<std::string, HandlerSpec> handlers_;
    RunnerLimits limits_;
    HttpPost http_post_;
    std::map<std::string, std::unique_ptr<Run>> runs_;
    uint64_t serial_ = 0;  // tells a late HTTP answer for an earlier run of an id from this one
    std::shared_ptr<Runner*> alive_ = std::make_shared<Runner*>(this);
};

}  // namespace chorus::daemon
