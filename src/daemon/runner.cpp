#include "daemon/runner.hpp"

#include "core/text.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/json.hpp"
#include "net/write.hpp"

namespace chorus::daemon {

std::map<std::string, HandlerSpec> default_handlers() {
    return {{"echo", HandlerSpec::built_in("echo")}, {"sleep", HandlerSpec::built_in("sleep")}};
}

HandlerSpec HandlerSpec::built_in(std::string name) {
    HandlerSpec h;
    h.builtin = std::move(name);
    return h;
}

HandlerSpec HandlerSpec::command(std::vector<std::string> argv) {
    HandlerSpec h;
    h.kind = Kind::exec;
    h.argv = std::move(argv);
    return h;
}

HandlerSpec HandlerSpec::post_to(std::string url) {
    HandlerSpec h;
    h.kind = Kind::http;
    h.url = std::move(url);
    return h;
}

std::vector<std::string> default_exec_env() {
    return {"PATH", "LANG", "LC_ALL", "TZ"};
}

namespace {

std::optional<uint32_t> as_number(const std::string& text) {
    uint32_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return n;
}

}  // namespace

Result<uint32_t> resolve_user(const std::string& user) {
    if (auto n = as_number(user)) return *n;
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return Error{"bad_config", fmt::format("no user named {}", log_quote(user))};
    }
    return static_cast<uint32_t>(pw.pw_uid);
}

Result<uint32_t> resolve_group(const std::string& name) {
    if (auto n = as_number(name)) return *n;
    group gr{};
    group* found = nullptr;
    std::vector<char> buf(16384);
    if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return Error{"bad_config", fmt::format("no group named {}", log_quote(name))};
    }
    return static_cast<uint32_t>(gr.gr_gid);
}

std::optional<uint32_t> primary_group(uint32_t uid) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return std::nullopt;
    }
    return static_cast<uint32_t>(pw.pw_gid);
}

std::optional<std::string> missing_program(const std::string& program) {
    const auto runnable = [](const std::string& path) {
        struct stat st {};
        return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
    };
    if (program.find('/') != std::string::npos) {
        if (runnable(program)) return std::nullopt;
        return std::string(access(program.c_str(), F_OK) == 0 ? "is not an executable file"
                                                              : "does not exist");
    }
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const size_t colon = dirs.find(':');
        const std::string_view dir = dirs.substr(0, colon);
        if (!dir.empty() && runnable(fmt::format("{}/{}", dir, program))) return std::nullopt;
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return fmt::format("is not on PATH ({})", path != nullptr ? path : "unset");
}

Status check_handler(const std::string& name, const HandlerSpec& spec) {
    const auto bad = [&](std::string what) {
        return Error{"bad_config", fmt::format("handlers.{}: {}", name, what)};
    };
    if (name.empty()) return Error{"bad_config", "handlers: a handler's name must not be empty"};
    if (const TextProblem p = check_text(name); p != TextProblem::none) {
        return Error{"bad_config",
                     fmt::format("handlers: the name {} {}", log_quote(name), describe(p))};
    }
    if (name.find(',') != std::string::npos) {
        // Members advertise their handlers as one comma-separated tag (kHandlersTag).
        return Error{"bad_config",
                     fmt::format("handlers: the name {} has a comma", log_quote(name))};
    }
    switch (spec.kind) {
        case HandlerSpec::Kind::builtin:
            if (spec.builtin != "echo" && spec.builtin != "sleep") {
                return bad(
                    fmt::format("builtin '{}' is unknown; there are echo and sleep", spec.builtin));
            }
            break;
        case HandlerSpec::Kind::exec: {
            if (spec.argv.empty() || spec.argv[0].empty()) {
                return bad("exec needs argv, a non-empty array whose first element is the program");
            }
            // A program that is not there is found at start, not at the first task.
            if (auto why = missing_program(spec.argv[0])) {
                return bad(fmt::format("exec: {} {}", log_quote(spec.argv[0]), *why));
            }
            struct stat st {};
            if (!spec.dir.empty() && (!spec.dir.starts_with('/') ||
                                      stat(spec.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
                return bad(fmt::format("dir {} must be an absolute path to a directory",
                                       log_quote(spec.dir)));
            }
            break;
        }
        case HandlerSpec::Kind::http: {
            const std::string_view url = spec.url;
            constexpr std::string_view scheme = "http://";
            const size_t slash = url.find('/', scheme.size());
            if (!url.starts_with(scheme) ||
                !net::Endpoint::parse(url.substr(scheme.size(), slash == std::string_view::npos
                                                                    ? std::string_view::npos
                                                                    : slash - scheme.size()))) {
                return bad(
                    fmt::format("url '{}' must look like http://127.0.0.1:8080/path (an IP "
                                "address and port)",
                                spec.url));
            }
            break;
        }
    }
    return Ok{};
}

Status check_exec_user(const std::string& name, const HandlerSpec& spec, uint32_t euid) {
    if (spec.kind != HandlerSpec::Kind::exec) return Ok{};
    const auto bad = [&](std::string what) {
        return Error{"bad_config", fmt::format("handlers.{}: {}", name, what)};
    };
    if (euid == 0 && !spec.uid) {
        return bad(
            "the agent runs as root, and so would this command: give the handler a \"user\" "
            "to run it as (such as \"nobody\"), or \"user\": \"root\" if it must be root");
    }
    if (euid != 0 && ((spec.uid && *spec.uid != euid) || (spec.gid && *spec.gid != getegid()))) {
        return bad("only an agent running as root can run a command as another user or group");
    }
    return Ok{};
}

namespace {

// A command's stdout is its result: JSON if it parses, else the text as a JSON string.
std::string as_json_result(const std::string& out) {
    if (out.find_first_not_of(" \t\r\n") == std::string::npos) return "null";
    // Deeper than the JSON limit reads as text too: it is stored, sent and shown as a string.
    return dump_json(json_or_string(out));
}

TaskOutcome failure(TaskState state, std::string error) {
    return TaskOutcome{state, "", std::move(error), std::nullopt};
}

}  // namespace

struct Runner::Run {
    Runner& runner;
    std::string id;
    uint64_t serial;
    std::function<void(TaskOutcome)> done;
    net::Handle<uv_timer_t> timer;       // the sleep itself, the deferral of an instant result, or
                                         // a command's timeout
    std::optional<TaskOutcome> verdict;  // decided before the handler ended (timeout, stop, cap)

    // exec
    net::Handle<uv_process_t> process;
    net::Handle<uv_pipe_t> in, out, err;
    std::string stdout_bytes, stderr_tail;
    bool exited = false;
    int64_t exit_status = 0;
    int term_signal = 0;

    Run(Runner& r, std::string i, uint64_t s, std::function<void(TaskOutcome)> d)
        : runner(r), id(std::move(i)), serial(s), done(std::move(d)) {}

    void arm(uint64_t ms) {
        if (!timer) {
            timer = net::make_timer(runner.loop_, this).value();
        }
        uv_timer_start(
            timer.get(),
            [](uv_timer_t* t) {
                auto* run = static_cast<Run*>(t->data);
                if (run != nullptr) run->timer_fired();
            },
            ms, 0);
    }

    // Finishes now with `o` (an instant result, or the end of a sleep).
    void settle(TaskOutcome o) {
        verdict = std::move(o);
        arm(0);
    }

    void timer_fired() {
        if (process) {
            // A command's timeout: kill it; the exit and the pipes' ends finish the run.
            if (!verdict)
                verdict = failure(TaskState::timed_out, "timed out; the command was killed");
            kill_group();
            return;
        }
        runner.complete(id, verdict.value_or(failure(TaskState::failed, "stopped")));
    }

    void kill_group() {
        if (process && process->pid > 0) uv_kill(-process->pid, SIGKILL);
    }

    bool pipes_open() const { return out || err; }

    // Bytes (or the end) on stdout or stderr. stdout is kept up to the output cap, past which
    // the command is killed; of stderr only the tail is kept, for the error message.
    void output(uv_stream_t* from, ssize_t n, const uv_buf_t* b) {
        const bool is_out = from == reinterpret_cast<uv_stream_t*>(out.get());
        if (n < 0) {
            (is_out ? out : err).reset();
            maybe_finish();
            return;
        }
        const std::string_view bytes(b->base, static_cast<size_t>(n));
        if (!is_out) {
            stderr_tail += bytes;
            const size_t keep = runner.limits_.stderr_tail_bytes;
            if (stderr_tail.size() > keep) stderr_tail.erase(0, stderr_tail.size() - keep);
            return;
        }
        const size_t cap = runner.limits_.output_bytes_max;
        if (stdout_bytes.size() + bytes.size() > cap) {
            if (!verdict) {
                verdict = failure(TaskState::failed,
                                  fmt::format("output_too_large: stdout passed {} bytes", cap));
            }
            kill_group();
            return;
        }
        stdout_bytes += bytes;
    }

    void maybe_finish() {
        if (!exited || pipes_open()) return;
        TaskOutcome o;
        if (verdict) {
            o = std::move(*verdict);
        } else if (term_signal != 0) {
            o = failure(TaskState::failed,
                        fmt::format("killed by signal {}; stderr: {}", term_signal, stderr_tail));
        } else if (exit_status != 0) {
            o = failure(TaskState::failed,
                        fmt::format("exit status {}; stderr: {}", exit_status, stderr_tail));
            o.exit_code = static_cast<int>(exit_status);
        } else {
            o.state = TaskState::succeeded;
            o.result = as_json_result(stdout_bytes);
            o.exit_code = 0;
        }
        runner.complete(id, std::move(o));
    }
};

Runner::Runner(uv_loop_t* loop, std::map<std::string, HandlerSpec> handlers, RunnerLimits limits,
               HttpPost http_post)
    : loop_(loop),
      handlers_(std::move(handlers)),
      limits_(limits),
      http_post_(std::move(http_post)) {}

Runner::~Runner() {
    *alive_ = nullptr;
    // Commands still running are killed: the agent is stopping, and an orphaned task would
    // keep running with nobody to report to.
    for (auto& [id, run] : runs_)
        run->kill_group();
}

std::vector<std::string> Runner::types() const {
    std::vector<std::string> out;
    for (const auto& [name, spec] : handlers_)
        out.push_back(name);
    return out;
}

void Runner::complete(const std::string& id, TaskOutcome outcome) {
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    auto done = std::move(it->second->done);
    runs_.erase(it);  // closes the run's handles; their memory goes in the close callbacks
    done(std::move(outcome));
}

void Runner::stop(const std::string& id) {
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    Run& run = *it->second;
    run.verdict = failure(TaskState::failed, "stopped");
    if (run.process) {
        run.kill_group();
    } else {
        run.arm(0);
    }
}

namespace {

void on_pipe_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    static thread_local char block[64 * 1024];
    (void)h;
    *buf = uv_buf_init(block, sizeof(block));
}

}  // namespace

void Runner::start(const TaskSpec& spec, std::function<void(TaskOutcome)> done) {
    CHORUS_ASSERT(!runs_.contains(spec.id));
    auto owned = std::make_unique<Run>(*this, spec.id, ++serial_, std::move(done));
    Run& run = *owned;
    runs_.emplace(spec.id, std::move(owned));

    auto h = handlers_.find(spec.type);
    if (h == handlers_.end()) {
        run.settle(failure(TaskState::failed, fmt::format("no handler named '{}'", spec.type)));
        return;
    }
    const HandlerSpec& handler = h->second;
    const uint64_t timeout_ms = ms_of(spec.timeout);

    if (handler.kind == HandlerSpec::Kind::builtin && handler.builtin == "echo") {
        run.settle(TaskOutcome{TaskState::succeeded, spec.payload, "", std::nullopt});
        return;
    }
    if (handler.kind == HandlerSpec::Kind::builtin) {  // sleep
        const auto p = parse_json(spec.payload).value_or(nullptr);
        if (!p.is_object() || !p.contains("ms") || !p["ms"].is_number_unsigned()) {
            run.settle(failure(TaskState::failed,
                               R"(sleep: the payload must be {"ms": N}, N a whole number of ms)"));
            return;
        }
        const auto ms = p["ms"].get<uint64_t>();
        if (ms > timeout_ms) {
            run.verdict = failure(
                TaskState::timed_out,
                fmt::format("timed out after {} ms (asked to sleep {} ms)", timeout_ms, ms));
            run.arm(timeout_ms);
            return;
        }
        run.verdict = TaskOutcome{TaskState::succeeded, fmt::format(R"({{"slept_ms":{}}})", ms), "",
                                  std::nullopt};
        run.arm(ms);
        return;
    }
    if (handler.kind == HandlerSpec::Kind::http) {
        const std::weak_ptr<Runner*> alive = alive_;
        const std::string id = spec.id;
        const uint64_t s = run.serial;
        http_post_(
            handler.url, spec.payload, spec.timeout, limits_.output_bytes_max,
            [alive, id, s](Result<std::pair<int, std::string>> r) {
                auto self = alive.lock();
                if (!self || *self == nullptr) return;
                Runner& runner = **self;
                auto it = runner.runs_.find(id);
                if (it == runner.runs_.end() || it->second->serial != s) return;
                if (it->second->verdict) return;  // stopped: its timer finishes it
                TaskOutcome o;
                if (!r) {
                    o = failure(
                        r.error().code == "timeout" ? TaskState::timed_out : TaskState::failed,
                        fmt::format("POST failed: {}", r.error().message));
                } else if (r->first < 200 || r->first > 299) {
                    o = failure(TaskState::failed, fmt::format("POST answered {}: {}", r->first,
                                                               r->second.substr(0, 512)));
                } else {
                    o.result = as_json_result(r->second);
                }
                // settle(), not complete(): this may run inside http_post_ itself.
                it->second->settle(std::move(o));
            });
        return;
    }

    // exec
    const auto pipe = [&]() {
        return net::make_handle<uv_pipe_t>(
                   loop_, [](uv_loop_t* l, uv_pipe_t* p) { return uv_pipe_init(l, p, 0); }, &run)
            .value();
    };
    run.in = pipe();
    run.out = pipe();
    run.err = pipe();
    // With limits, prlimit(1) sets them on itself and then becomes the command.
    std::vector<std::string> argv;
    if (const ExecLimits& l = handler.limits; l.any()) {
        argv.push_back(kPrlimit);
        for (const auto& [flag, value] : {std::pair{"--cpu", l.cpu_s},
                                          {"--as", l.as_bytes},
                                          {"--nofile", l.nofile},
                                          {"--nproc", l.nproc}}) {
            if (value != 0) argv.push_back(fmt::format("{}={}:{}", flag, value, value));
        }
        argv.push_back("--");
    }
    argv.insert(argv.end(), handler.argv.begin(), handler.argv.end());
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // The environment: the variables the handler allows from the agent's, and which task this
    // is. Nothing else the agent was given reaches the command.
    std::vector<std::string> env_strings = {"CHORUS_TASK_ID=" + spec.id,
                                            "CHORUS_TASK_KEY=" + spec.key};
    for (const std::string& name : handler.env) {
        if (name.starts_with("CHORUS_TASK_")) continue;
        if (const char* v = std::getenv(name.c_str())) env_strings.push_back(name + "=" + v);
    }
    std::vector<char*> env;
    for (auto& e : env_strings)
        env.push_back(e.data());
    env.push_back(nullptr);

    uv_stdio_container_t stdio[3];
    // stdin is an OS pipe, not the socket pair libuv makes for UV_CREATE_PIPE: bash reads
    // ~/.bashrc when its stdin is a socket (it takes itself for a command run by sshd), which
    // would run the user's shell setup (pyenv, prompts) before every bash handler.
    uv_file stdin_fds[2];
    if (const int rc = uv_pipe(stdin_fds, 0, UV_NONBLOCK_PIPE); rc != 0) {
        run.in.reset();
        run.out.reset();
        run.err.reset();
        run.settle(failure(TaskState::failed, fmt::format("could not make a pipe for {}: {}",
                                                          handler.argv[0], uv_strerror(rc))));
        return;
    }
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = stdin_fds[0];
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(run.out.get());
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(run.err.get());
    uv_process_options_t o{};
    o.file = args[0];
    o.args = args.data();
    o.env = env.data();
    o.stdio_count = 3;
    o.stdio = stdio;
    o.cwd = handler.dir.empty() ? nullptr : handler.dir.c_str();
    // Detached: setsid(), so the command leads its own process group and a kill reaches every
    // process it started. Its user and group are set in the child before exec; libuv drops the
    // supplementary groups with them (setgroups(0)).
    o.flags = UV_PROCESS_DETACHED;
    if (handler.uid) {
        o.flags |= UV_PROCESS_SETUID;
        o.uid = *handler.uid;
    }
    if (handler.gid) {
        o.flags |= UV_PROCESS_SETGID;
        o.gid = *handler.gid;
    }
    o.exit_cb = [](uv_process_t* p, int64_t status, int signal) {
        auto* r = static_cast<Run*>(p->data);
        if (r == nullptr) return;
        r->exited = true;
        r->exit_status = status;
        r->term_signal = signal;
        // Whatever the command left behind in its group goes with it, so the pipes close.
        r->kill_group();
        if (r->timer) uv_timer_stop(r->timer.get());
        r->maybe_finish();
    };
    auto* proc = new uv_process_t{};
    const int rc = uv_spawn(loop_, proc, &o);
    run.process = net::Handle<uv_process_t>(proc);  // initialised even on failure; closed by RAII
    proc->data = &run;
    ::close(stdin_fds[0]);  // the child's end: it has its own now
    // Ours, as a stream (closed with the handle); if it cannot be, the command sees its end.
    const bool writable = rc == 0 && uv_pipe_open(run.in.get(), stdin_fds[1]) == 0;
    if (!writable) ::close(stdin_fds[1]);
    if (rc != 0) {
        run.process.reset();
        run.in.reset();
        run.out.reset();
        run.err.reset();
        run.settle(failure(TaskState::failed, fmt::format("could not start {}: {}", handler.argv[0],
                                                          uv_strerror(rc))));
        return;
    }
    run.arm(timeout_ms);

    // The payload goes to stdin, which is then closed so the command sees its end. What the
    // pipe does not take at once waits in a request that owns its bytes: the run may be gone
    // before libuv is done with it. A command that does not read its stdin makes the write fail
    // with EPIPE; that is its business.
    if (!writable) {
        run.in.reset();
    } else {
        // Once written, our end is closed (a pipe has no half-close): the command sees EOF.
        auto* in = reinterpret_cast<uv_stream_t*>(run.in.get());
        auto written = net::write_bytes(in, spec.payload + "\n", [](uv_stream_t* s, int) {
            if (auto* r = static_cast<Run*>(s->data)) r->in.reset();
        });
        if (!written || *written == net::Written::now) run.in.reset();
    }

    for (auto* p : {run.out.get(), run.err.get()}) {
        uv_read_start(reinterpret_cast<uv_stream_t*>(p), on_pipe_alloc,
                      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                          auto* r = static_cast<Run*>(s->data);
                          if (r != nullptr) r->output(s, n, b);
                      });
    }
}

}  // namespace chorus::daemon
