// Task bookkeeping on the node that runs tasks (ARCHITECTURE.md, "Tasks"): the queue, the slots,
// the states and the results kept for readers. Pure: the driver runs the handlers and reports
// outcomes.
//
// A task is accepted only while a slot or a queue place is free, so everything here is bounded
// by capacity + queue_max live tasks plus the retention limits on finished ones. States move
// queued → running → succeeded | failed | timed_out | cancelled, and only forward: an outcome
// for a task that is no longer running (cancelled meanwhile) is ignored. Task ids carry the
// hash of the key, so any node can find a task's owners on the ring without a directory.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "core/name.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "core/types.hpp"

namespace chorus {

enum class TaskState : uint8_t { queued, running, succeeded, failed, timed_out, cancelled, lost };

std::string_view to_string(TaskState s);
constexpr bool is_finished(TaskState s) {
    return s != TaskState::queued && s != TaskState::running;
}

// How the entry node finds a task's owner (ARCHITECTURE.md, "Tasks"): among its key's
// candidates on the ring (leaderless, the default), or the member the coordinator assigns it
// to (issue 17: the least loaded under load_threshold).
enum class TaskPlacement : uint8_t { ring, coordinator };

std::string_view to_string(TaskPlacement p);
std::optional<TaskPlacement> placement_from(std::string_view text);

// What a client asks to run. `payload` is JSON text, checked at the boundary that took it.
struct TaskSpec {
    std::string id;
    std::string key;
    std::string type;
    std::string payload = "null";
    Duration timeout{};
    // Placement constraints, sorted by key: the task runs only on a member carrying every one
    // of these tags with the same value (Nomad's constraints, by equality). Empty: anywhere.
    Tags where;
    TaskPlacement placement = TaskPlacement::ring;
    // One runner: the task runs on the coordinator of the members that can run it, and if that
    // member dies before it finishes, on the next (core/coordinator.hpp, succession).
    bool singleton = false;
};

// Whether a member with `tags` may run `spec`: it carries every tag of spec.where, and its
// handlers tag (kHandlersTag), when it has one, names spec.type. Draining members take none.
bool fits(const Tags& tags, const TaskSpec& spec);

// How a handler ended. `result` is JSON text (succeeded); `error` says why otherwise.
struct TaskOutcome {
    TaskState state = TaskState::succeeded;
    std::string result;
    std::string error;
    std::optional<int> exit_code;
};

struct Task {
    TaskSpec spec;
    TaskState state = TaskState::queued;
    Name owner;
    std::string result;  // JSON text once succeeded
    std::string error;
    std::optional<int> exit_code;
    Time created{};
    std::optional<Time> started;
    std::optional<Time> finished;
    uint32_t attempts = 0;

    size_t bytes() const;  // what keeping it costs, roughly
};

// "<16 hex digits of the key's hash>-<suffix>": the suffix is 16 hex digits unique to the
// submission, or the name a client chose for its task (see valid_task_name).
std::string make_task_id(uint64_t key_hash, uint64_t unique);
std::string make_task_id(uint64_t key_hash, std::string_view name);
// 1 to kTaskNameMax characters of [A-Za-z0-9._-]: safe in a URL path and a log line.
inline constexpr size_t kTaskNameMax = 64;
bool valid_task_name(std::string_view name);
// The key hash an id carries; nullopt for anything not shaped like make_task_id's output.
std::optional<uint64_t> task_key_hash(std::string_view id);

struct TaskLimits {
    // Tasks run at once. The load a node reports is (running + queued) / capacity.
    uint32_t capacity = 16;
    // Tasks waiting for a slot; beyond it the node refuses (the router tries another owner).
    uint32_t queue_max = 1024;
    // Finished tasks kept for readers: at most this many, this many bytes of them (payloads
    // and results), this long after they finished; the oldest go first.
    uint32_t results_max = 10'000;
    size_t results_bytes_max = 256u << 20;
    Duration results_ttl = seconds(3600);
    // A task's key: non-empty, at most this long (it is hashed and kept with every record).
    size_t key_bytes_max = 512;
    // A task's payload and its result, each.
    size_t payload_bytes_max = 1u << 20;
    size_t result_bytes_max = 1u << 20;
    // Applied when a task names none, and the most a task may ask for.
    Duration timeout_default = seconds(60);
    Duration timeout_max = seconds(3600);

    Status validate() const;
};

struct TaskStats {
    uint64_t accepted = 0;
    uint64_t refused = 0;  // full
    uint64_t succeeded = 0;
    uint64_t failed = 0;
    uint64_t timed_out = 0;
    uint64_t cancelled = 0;
    uint64_t evicted = 0;  // finished tasks dropped by the retention limits
};

// ---- between nodes (schemas/chorus.fbs): one hop from the node a client posted to ----

// Run this task here; the owner never forwards it further.
struct TaskSubmit {
    uint64_t request = 0;
    TaskSpec spec;
    // How long the sender waits for the answer (zero: not said); the owner answers within it.
    Duration budget{};
    // Run nothing: the receiver, as coordinator, answers with the member that should run it.
    bool assign = false;
    // With assign: members the entry tried already (refused, or silent): not to be named.
    std::vector<Name> avoid{};
};
// A task's status; with `cancel`, cancel it first; with `wait`, answer when it finishes or the
// wait ends.
struct TaskQuery {
    uint64_t request = 0;
    std::string id;
    bool cancel = false;
    Duration wait{};
};
// The answer, with HTTP's status codes, and the owner's load as of now.
struct TaskReply {
    uint64_t request = 0;
    uint16_t status = 0;
    std::string code;  // an error's code, empty on success
    std::string message;
    uint32_t load_milli = 0;
    uint32_t capacity = 0;
    std::optional<Task> task;
    uint32_t replicas = 0;  // a submission accepted: members storing the task, the owner included
    Name assignee{};        // a TaskSubmit with assign: the member the coordinator chose
};

// Keep this copy of another node's task (or, with `drop`, forget it); the reply says whether
// it is stored.
struct TaskCopy {
    uint64_t request = 0;
    Task task;
    bool drop = false;
};

// Any of the frames above.
using TaskMessage = std::variant<TaskSubmit, TaskQuery, TaskReply, TaskCopy>;
// Whether M is one of TaskMessage's alternatives (a stream frame may carry other messages).
template <typename M>
inline constexpr bool kIsTaskMessage =
    std::is_same_v<M, TaskSubmit> || std::is_same_v<M, TaskQuery> || std::is_same_v<M, TaskReply> ||
    std::is_same_v<M, TaskCopy>;

// Tasks (or anything) by task id, found by a std::string or a string_view without a copy.
// Hashed rather than ordered: nothing walks them in id order, and a lookup is one hash instead
// of a dozen string comparisons on cold tree nodes (a tenth of the loop's time under load).
//
// The hash is deliberately not noexcept: libstdc++ then keeps each node's hash code, so a
// lookup compares codes before keys and walks a bucket without hashing every node it passes
// (with a noexcept hash it recomputes them: a tenth of the loop's time with two copies kept).
struct TaskIdHash {
    using is_transparent = void;
    size_t operator()(std::string_view id) const {  // NOLINT(performance-noexcept-*)
        return std::hash<std::string_view>{}(id);
    }
};
template <typename V>
using TaskIdMap = std::unordered_map<std::string, V, TaskIdHash, std::equal_to<>>;

class TaskBoard {
  public:
    explicit TaskBoard(TaskLimits limits);

    // Queues a task to run here. Errors: `full` (every slot and queue place taken),
    // `task_exists` (the id is taken). Nothing changes on error.
    Result<const Task*> submit(TaskSpec spec, Name owner, Time now);
    // Queues a task whose place the driver reserved when it accepted it (it then waited to be
    // stored): submit() without the capacity check, which was made then. Error: `task_exists`.
    Result<const Task*> admit(TaskSpec spec, Name owner, Time now);
    // Moves queued tasks into free slots, oldest first; the driver starts their handlers.
    std::vector<std::string> start_ready(Time now);
    // A handler ended. Ignored (false) unless the task is running; frees its slot either way
    // if it held one.
    bool finish(std::string_view id, TaskOutcome outcome, Time now);
    enum class Cancel : uint8_t { not_found, cancelled, running, already_finished };
    // A queued task is cancelled at once; a running one is marked cancelled and keeps its slot
    // until the driver has stopped its handler and called finish() (`running`).
    Cancel cancel(std::string_view id, Time now);
    // Drops finished tasks beyond the retention limits.
    void expire(Time now);
    // Puts back a task recovered from the journal after a restart, bypassing the capacity
    // check (nothing accepted is dropped because the limits shrank). One that was running
    // when the node stopped is queued again, its attempts kept: it runs once more.
    void restore(Task t, Time now);
    // Ids of the finished tasks the retention limits dropped since the last call (the journal
    // removes them too).
    std::vector<std::string> take_evicted() { return std::exchange(evicted_, {}); }

    // Queued tasks, oldest first (what a leaving node hands over).
    std::vector<std::string> queued_ids() const { return {queue_.begin(), queue_.end()}; }
    // Drops a queued task another node has taken over; false if it is not queued.
    bool hand_over(std::string_view id);

    const Task* find(std::string_view id) const;
    size_t running() const { return slots_.size(); }
    std::vector<std::string> running_ids() const { return {slots_.begin(), slots_.end()}; }
    // Up to `n` tasks: the running ones, then the queued (oldest first), then the finished
    // ones kept (newest first). What an operator looks at first.
    std::vector<const Task*> recent(size_t n) const;
    size_t queued() const { return queue_.size(); }
    // (running + queued) / capacity × 1000: what this node reports to its peers.
    uint32_t load_milli() const;
    const TaskLimits& limits() const { return limits_; }
    const TaskStats& stats() const { return stats_; }
    size_t kept() const { return tasks_.size(); }

  private:
    void retire(Task& t, Time now);  // t just finished: count it and queue it for retention

    TaskLimits limits_;
    TaskIdMap<Task> tasks_;
    std::deque<std::string> queue_;
    std::list<std::string> finished_;           // retention order: oldest finished first
    std::set<std::string, std::less<>> slots_;  // running, or cancelled and still stopping
    size_t finished_bytes_ = 0;
    std::vector<std::string> evicted_;
    TaskStats stats_;
};

}  // namespace chorus
