// The task protocol on one member (ARCHITECTURE.md, "Tasks"): placing a client's task on an
// owner, the owner's pipeline (accept, store, admit, run, tell the copies), the copies this
// member holds for others (keep, check, take over, place orphans), hand-off on leave, recovery
// after a restart, and the lookups that find a task from any member. Sans-IO, in Node's shape:
// every input carries `now`, effects go to an outbox the driver drains after every call, and
// the driver calls tick() at next_deadline(). The daemon drives it over libuv (daemon/tasks.hpp),
// the simulator over virtual time (sim/), so the protocol that runs is the one explored.
//
// Effects, in the order the driver performs them after each call:
// - journal changes (puts, removes; refused tasks' changes unstaged), then a commit if asked.
//   The driver reports each commit with committed(); a task is admitted, and a copy reported
//   stored, only after the commit that covers it (ScyllaDB raft's fsm_output: what must be
//   stored is stored before what depends on it is said);
// - handlers to start and stop; their ends come back through finished();
// - frames to peers, requests among them (a reply comes back through on_message(), or the
//   driver reports the request failed with send_failed() / link_broken());
// - replies to the link a peer's request came on.
//
// Answers to clients and to this member's requests are continuations, called from within
// inputs. Every wait is bounded: requests by their deadlines, clients' waits by theirs and by
// kWaitersMax, pending tasks by their acknowledgement deadline.
//
// The units it composes each hold one concept: TaskBoard (this member's tasks), CopyStore (the
// copies it holds), CopyTracker (where its tasks' copies are), Placement (the entry's search
// for an owner), judge_copy (what a copy check's answer means), Ring and choose_owner.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/copies.hpp"
#include "core/copy_tracker.hpp"
#include "core/node.hpp"
#include "core/placement.hpp"
#include "core/ring.hpp"
#include "core/rng.hpp"
#include "core/router.hpp"
#include "core/task.hpp"

namespace chorus {

struct TaskNodeConfig {
    TaskLimits limits;
    // Points per member on the ring. More points spread keys more evenly (the share of the
    // largest member falls roughly as 1/sqrt(vnodes)) at the cost of a bigger ring to build on
    // every membership change.
    uint32_t vnodes = 64;
    // Distinct members in a key's preference list: the owners the router chooses among.
    uint32_t candidates = 3;
    // A candidate with φ at or above this is passed over while a healthier one exists (it is
    // likely gone, or too slow to answer).
    double phi_route = 5.0;
    // 0: the least loaded candidate; > 0: bounded loads (see choose_owner).
    double balance_factor = 0;
    // How long an owner has to answer a forwarded task before the next candidate is tried.
    // It follows the round trips of the forwards owners accepted (srtt + 4·rttvar, as TCP's
    // RTO, core/rtt.hpp; each owner's own, or all owners' for one not forwarded to yet),
    // within [forward_timeout_min, forward_timeout]: an owner that went silent (power lost,
    // its packets dropped) costs the client about one such timeout, not the ceiling.
    // forward_timeout is the ceiling, and the timeout until a forward has been answered; each
    // timeout doubles that owner's next one (up to it) until one is answered in time. The
    // entry tells the owner the timeout as its budget, and the owner answers within three
    // quarters of it or refuses, so a task it answers late never runs there while the next
    // candidate takes it too (ARCHITECTURE.md, "Tasks").
    Duration forward_timeout = seconds(2);
    // The floor of the measured timeout. An accepted forward waits for the owner's journal
    // commit and its copy on another member (an fsync each); an owner given too little time
    // refuses and the next candidate is tried, so the floor leaves an fsync hiccup and a busy
    // loop room. 250 ms keeps a silent owner's cost under half a second, a copy's move past a
    // silent holder included. At or above forward_timeout: the timeout is fixed.
    Duration forward_timeout_min = milliseconds(250);
    // Unfinished copies of other nodes' tasks held here at most (count and bytes); finished
    // ones follow the results limits (results_max, results_bytes_max).
    size_t copies_max = CopyLimits{}.unfinished_max;
    size_t copies_bytes_max = CopyLimits{}.unfinished_bytes_max;
    // Members that store each task before it is acknowledged: the owner, and task_replicas - 1
    // holders of a copy, the next alive members of its key's preference list (see
    // core/copy_tracker.hpp). When the owner dies, the holder of a copy runs the task (at
    // least once). 1 keeps no copy; 2 (one copy elsewhere) is the most this build keeps,
    // since with two holders both would take over a dead owner's task.
    uint32_t task_replicas = 2;
    // The fewest members a task may be stored on when it is acknowledged (0: task_replicas,
    // the default: a task no member could copy in time is refused with 503 not_replicated).
    // 1 prefers availability: the task is acknowledged alone, says so, and is copied later.
    uint32_t min_replicas = 0;
    // How long one member has to store a copy before the next member of the key is tried.
    Duration copy_timeout = milliseconds(500);
    // How often a node asks the owners of the unfinished copies it holds how their tasks
    // stand. A copy can miss its task's outcome (the owner restarted and forgot where the copy
    // was, or crashed before telling it); asked, the owner brings it up to date, and an owner
    // that no longer has the task at all (its journal lost) leaves it to this node to run.
    Duration copy_check = seconds(30);
    // How a task that does not say is placed (its "placement"): on its key's candidates
    // (ring), or by the coordinator.
    TaskPlacement placement = TaskPlacement::ring;
    // Coordinator placement: the coordinator assigns a task to the least loaded member that
    // can run it (its load, (running + queued) / capacity, with what the coordinator sent it
    // since) among those whose load as last reported is under this; when none is, the task is
    // refused, 503 overloaded.
    double load_threshold = 1.0;
    // Keep-majority: a member acts as coordinator (assigns tasks, runs singletons) only while
    // its view holds quorum (core/coordinator.hpp), so at most one side of a partition does.
    // Off (the default), each side of a partition coordinates its own members.
    bool coordinator_quorum = false;

    Status validate() const;
};

// What a request comes to, in HTTP's terms.
struct TaskAnswer {
    int status = 200;  // 200 finished/found, 202 accepted, 4xx, 503
    std::string code;  // an error's code; empty on success
    std::string message;
    std::optional<Task> task;
    bool forwarded = false;  // the task runs on another node
    uint32_t replicas = 0;   // a submission accepted: members storing it (0: not said)
    Duration retry_after{};  // with 503: when to try again
    static TaskAnswer error(int status, std::string code, std::string message);
};

struct TaskNodeStats {
    uint64_t forwarded = 0;    // tasks sent to another owner and accepted there
    uint64_t local = 0;        // tasks accepted here from a client of this node
    uint64_t remote = 0;       // tasks accepted here from another node
    uint64_t full = 0;         // tasks refused here: capacity + queue_max taken (with pending)
    uint64_t retries = 0;      // candidates passed over after a refusal, timeout or broken link
    uint64_t unavailable = 0;  // 503s: no owner alive, or every candidate refused
    uint64_t forward_timeouts = 0;
    uint64_t queries = 0;         // status lookups sent to other nodes
    uint64_t recovered = 0;       // tasks read back from the journal at start
    uint64_t requeued = 0;        // of those, the ones that had not finished and run again
    uint64_t unjournaled = 0;     // tasks refused because the journal could not store them
    uint64_t not_replicated = 0;  // tasks refused: too few members stored a copy in time
    uint64_t promoted = 0;        // copies this node took over and ran when their owner died
    uint64_t dropped = 0;         // copies forgotten here because their owner refused the task
    uint64_t caught_up = 0;       // copies that missed their task's outcome and were told on asking
    uint64_t orphans_placed = 0;  // taken-over tasks this node had no room for, placed elsewhere
    uint64_t copies_refused = 0;  // copies refused: the unfinished copies held hit their limits
    uint64_t copies_not_owner = 0;  // copy frames refused: sent by a member not the task's owner
    uint64_t copies_stale = 0;      // copies refused: another owner's record of the task, as far
                                    // along or further, is held here and that owner is up
    uint64_t held_elsewhere = 0;    // tasks refused: their copy is here, and their owner is up
    uint64_t assigned = 0;          // tasks this node, as coordinator, assigned to a member
    uint64_t overloaded = 0;        // assignments refused: every member at load_threshold
    uint64_t no_quorum = 0;         // coordinator work refused: this view does not hold quorum
    uint64_t late = 0;  // tasks refused: stored after the answer was due (a slow journal)
};

// A journal change, in the order the driver stages them.
struct JournalChange {
    enum class Kind : uint8_t {
        put,      // the task's record as it is now
        remove,   // the task's record goes
        unstage,  // a change staged for the task and not committed is dropped (refused after all)
    };
    Kind kind = Kind::put;
    std::string id;
    std::optional<Task> task;  // with put
};

struct TaskSend {  // a frame to a peer; a request when its number is not 0
    Name to;
    TaskMessage message;
};

struct TaskReplyOut {  // the answer to a peer's request, on the link it came on
    uint64_t link = 0;
    TaskReply reply;
};

struct TaskOutbox {
    std::vector<JournalChange> journal;
    bool commit = false;  // commit what is staged now
    bool probe = false;   // the journal failed earlier: commit, or probe if nothing is staged
    std::vector<std::string> starts;  // run these tasks' handlers (the board has their specs)
    std::vector<std::string> stops;   // stop these tasks' handlers (cancelled)
    std::vector<TaskSend> sends;
    // Requests given up before their frames went out (timed out): a frame still waiting for
    // its connection must not go later, or the task could run on an owner after the next
    // candidate took it too.
    std::vector<std::pair<Name, uint64_t>> abandoned;
    std::vector<TaskReplyOut> replies;

    bool empty() const {
        return journal.empty() && !commit && !probe && starts.empty() && stops.empty() &&
               sends.empty() && abandoned.empty() && replies.empty();
    }
    // Empties it, keeping the buffers: a driver that swaps outboxes allocates nothing per input.
    void clear() {
        journal.clear();
        commit = probe = false;
        starts.clear();
        stops.clear();
        sends.clear();
        abandoned.clear();
        replies.clear();
    }
};

class TaskNode {
  public:
    using Done = std::function<void(TaskAnswer)>;

    // `node`: this member's membership (read, and told the load); `handlers`: the task types
    // this member can run; `journaled`: whether a journal stores tasks (else memory only),
    // and `journal_error`, why a journal that was asked for cannot be used (every task is
    // refused with it).
    TaskNode(TaskNodeConfig config, Node& node, KeyHash hash, std::set<std::string> handlers,
             bool journaled, std::optional<Error> journal_error, uint64_t seed, Time now);
    TaskNode(const TaskNode&) = delete;
    TaskNode& operator=(const TaskNode&) = delete;

    // ---- inputs ----

    // A client's task. `spec` as the client gave it; an empty id gets a fresh one, a given one
    // is the client's name for the task. With `wait`, answers 200 with the finished task if
    // it finishes in time. `client` names who asks (0: no one in particular): client_gone()
    // lets go of any wait held for it.
    void submit(TaskSpec spec, Duration wait, Done done, uint64_t client, Time now);
    // Status (and with `cancel`, cancellation) of a task placed from any node.
    void query(const std::string& id, Duration wait, bool cancel, Done done, uint64_t client,
               Time now);
    // The client went: its waits for tasks to finish are dropped now, not when they end.
    void client_gone(uint64_t client);
    // A frame from `from`, on link `link` (where a reply to it goes). A TaskReply must come on
    // the link its request went out on: the driver checks that.
    void on_message(const Name& from, uint64_t link, TaskMessage m, Time now);
    // A request's frame could not go out (no connection): it fails now.
    void send_failed(uint64_t request, Error why, Time now);
    // The connection to `peer` closed: its requests fail.
    void link_broken(const Name& peer, Time now);
    // A membership change: the ring is rebuilt at its next use, and the tasks of a member
    // that died or left are taken over from the copies this node holds.
    void member_changed(const MemberEvent& e, Time now);
    void membership_changed() { ring_stale_ = line_stale_ = true; }
    // A handler ended.
    void finished(const std::string& id, TaskOutcome outcome, Time now);
    // The journal's changes up to `upto` (counted in JournalChange order, puts and removes,
    // from 1) are stored, or failed together.
    void committed(uint64_t upto, const Status& st, Time now);
    // What the journal held at start: this node's tasks run again if they had not finished,
    // other nodes' are copies. Called once, before anything else.
    void restore(std::vector<Task> tasks, Time now);
    // Graceful leave: stops starting queued tasks and hands each to another candidate (the
    // holder of its copy first), then lets the running ones finish for up to `drain`, so their
    // copies learn the outcome instead of running them again. `done` runs then. Tasks no one
    // took stay here, and their copy holders take them over when this node is gone.
    void hand_off(Duration drain, std::function<void(size_t handed, size_t kept)> done, Time now);
    // Drain (`chorus drain`): a hand-off without the leave. The node stays a member but takes
    // no new tasks or copies (refused here; the driver also sets kDrainTag so routers skip it),
    // hands its queued tasks to other candidates as hand_off does and lets the running ones
    // finish; `done` runs once the queue is handed over. Off: it takes tasks again and starts
    // the queued ones nobody took.
    void drain(bool on, std::function<void(size_t handed, size_t kept)> done, Time now);
    bool draining() const { return draining_; }
    void tick(Time now);
    // When tick() has something to do next; Time::max() if nothing waits.
    Time next_deadline() const;

    // ---- outputs and state ----

    TaskOutbox& outbox() { return outbox_; }

    // The key's candidates as the router sees them now, and its choice.
    struct Lookup {
        uint64_t key_hash = 0;
        std::vector<RouteCandidate> candidates;
        std::optional<size_t> choice;
    };
    Lookup lookup(std::string_view key, Time now);
    const Ring& ring();
    const TaskBoard& board() const { return board_; }
    // Copies of other nodes' tasks held here.
    const CopyStore& copies() const { return copies_; }
    size_t orphans() const { return orphans_.size(); }
    // Where this node's tasks have their copies, and which lack some.
    const CopyTracker& tracker() const { return tracker_; }
    // Changes staged or tasks waiting to be stored.
    bool storing() const { return !staged_.empty() || !after_commit_.empty() || !pending_.empty(); }
    // A journal that failed at run time: its last commit failed, and none has succeeded since.
    // Meanwhile the node refuses tasks and copies until `retry_at`, then takes them again and
    // lets the next commit decide.
    struct JournalTrouble {
        Error error;
        Time since;
        Time retry_at;
        Duration backoff;
        uint64_t failures = 0;  // commits failed since `since`
        uint64_t upto = 0;      // the journal changes staged when it last failed
        bool retried = false;   // retry_at came: tasks are taken again, and a commit decides
    };
    const std::optional<JournalTrouble>& journal_failing() const { return journal_failing_; }
    // Called when the journal starts failing (with why) and when it works again (nullopt).
    std::function<void(const std::optional<Error>&)> on_journal_state;
    // Called with the round trip of every forwarded task an owner accepted (for metrics).
    std::function<void(Duration)> on_forwarded;
    // Whether a client is still there to answer (set by the API; unset: always).
    std::function<bool(uint64_t client)> client_present;
    const TaskNodeConfig& config() const { return config_; }
    const TaskNodeStats& stats() const { return stats_; }
    // Clients' waits for tasks held on this node now (each bounded by its wait).
    size_t waiting() const { return waiters_.size(); }
    // The load this node reports: the board's, or kLoadRefusing while its journal fails.
    uint32_t reported_load(Time now) const;
    // Requests sent and not answered yet.
    size_t requests() const { return requests_.size(); }
    const std::set<std::string>& handlers() const { return handlers_; }

  private:
    struct Request {
        Name peer;
        Time deadline{};
        std::function<void(Result<TaskReply>)> done;
    };
    struct Waiter {
        uint64_t client = 0;
        std::string task;
        Time until{};
        std::function<void(Time now)> woken;
    };
    struct Submission;
    struct Search;
    // Tasks accepted here and not stored yet: they hold a place on the board's budget but
    // run only once stored, in the journal and on their copies' members (which overlap: an
    // acknowledgement waits for the slower, not the sum).
    struct Pending {
        Task task;
        Done done;
        std::vector<Done> retries;         // the same task submitted again meanwhile
        bool committed = false;            // in the journal (or there is none)
        uint64_t change = 0;               // its journal change (0: none): what commits it
        Time ack_by{};                     // answered by then, or refused (its asker's budget)
        std::optional<uint32_t> replicas;  // the copies' verdict: accepted, on this many members
    };
    // Load as last heard from a peer in a reply, and the tasks sent to it since; the round
    // trips of the forwards it accepted, and whether it has gone quiet.
    struct PeerLoad {
        uint32_t reply_load_milli = 0;
        Time reply_at{};
        uint32_t capacity = 0;  // 0: not heard yet; assume ours
        uint32_t sent = 0;
        Time sent_since{};
        RttEstimator forward_rtt;
        // A forward to it timed out and no frame has come from it since: until then (bounded
        // by kQuietFor, after which φ and membership speak for it) the router passes it over
        // as it does a high-φ candidate, so a silent owner costs one timeout, not one a task.
        Time quiet_until{};
    };

    const Name& self() const;
    std::optional<TaskAnswer> validate(TaskSpec& spec);
    // Accepts a task on this node's board (for a local client or a peer). The answer waits
    // until the task is stored: in the journal's commit when there is one, and on the members
    // its copies need (the tracker's verdict), whichever comes last; only then does it run.
    // `budget`: how long the asker waits (zero: not said).
    void accept(TaskSpec spec, Duration budget, Done done, Time now);
    void admit_if_stored(const std::string& id, Time now);
    // A pending task is not accepted after all: remembered as declined, and `refusal` is its
    // answer (and its retries'). The caller has dropped its copies and its journal record.
    // A pending task given up after its copies went out and its record was staged: the
    // holders forget it, and its record goes (it must not come back after a restart).
    void withdraw(const std::string& id, const Task& task);
    void refuse(const std::string& id, Pending p, const TaskAnswer& refusal);
    void settle(const CopyVerdict& v, Time now);
    // Board changes to the journal: a task's record, and the records retention dropped.
    void record(const std::string& id);
    void record_evictions();
    uint64_t stage(JournalChange c);
    TaskAnswer accepted(const std::string& id) const;  // 202 with the task as it is now
    // Copies. The tracker says where this node's tasks' copies go (CopySend), which to drop
    // and when a task may be acknowledged; pump() carries that out. The holder of a copy
    // keeps it (keep_copy) and runs the task if the owner dies (promote).
    void pump(Time now);
    // The alive members that may hold a copy of a key's task, in the key's preference order,
    // healthy ones (φ below phi_route) first; never this node.
    std::vector<Name> copy_targets(const TaskSpec& spec, Time now);
    // Whether `member` may run the task: it has the handler, carries the tags spec.where asks
    // for, and is not draining (core/task.hpp, fits).
    bool can_run(const Name& member, const TaskSpec& spec) const;
    // The key's preference list among the members that may run the task.
    std::vector<Name> preference(const TaskSpec& spec, size_t count);
    // Sorts spec.where and checks it against the tag limits; the 400 when it is wrong.
    std::optional<TaskAnswer> check_where(Tags& where) const;
    // Why no member may run `spec`: 422 unknown_type, or 503 no_match.
    TaskAnswer no_candidate(const TaskSpec& spec);
    const Task* owned(std::string_view id) const;  // on the board, or pending
    void tell_copies(const std::string& id);  // a task of ours ended: its copies hear the outcome
    void keep_copy(Task t, std::function<void(bool stored)> stored, Time now);
    // Whether another owner that is up has the task `t` records (this node owns it, or holds
    // that owner's record, as far along): `t`'s copy is refused here (held_elsewhere).
    bool owned_elsewhere(const Task& t) const;
    // A pending task's copy met another owner's record: refused, it runs there only.
    void owned_by_another(const std::string& id, std::string why);
    void drop_copy(const Task& t);
    void decline(const std::string& id);  // refused at submission: remembered, bounded
    void promote(const Name& gone, Time now);
    // Copies this node runs as its own, as far as its capacity allows; the rest become orphans.
    void take_over(const std::vector<std::string>& ids, Time now);
    // Orphans: copies of a dead owner's tasks that did not fit here. Each goes to this node once
    // it has room, or to another candidate of its key that takes it.
    void place_orphans(Time now);
    void offer_orphan(const std::string& id, std::vector<Name> to, size_t next, Time now);
    bool has_room() const;  // running + queued + pending below capacity + queue_max
    void check_copies(Time now);
    void verify_copies(Time now);
    void verify_later(const std::string& id, Time now);  // to verify with its owner
    // Asks the owner of a copy how its task stands and acts on the answer (judge_copy).
    void ask_owner(const std::string& id, const Name& owner, bool verification, Time now);
    void start_ready(Time now);
    void report_load(Time now);
    bool refusing_tasks(Time now) const;  // the journal failed and its retry is not due yet
    void journal_failed(const Error& why, Time now);
    void journal_recovered(Time now);
    void check_drained(Time now);
    // hand_off's work, for a leave or a drain: the queue to other candidates, then `done` once
    // the running tasks end or `drain` passes.
    void hand_off_queue(Duration drain, std::function<void(size_t, size_t)> done, Time now);
    TaskAnswer answer_query(const std::string& id, bool cancel, Time now);
    void wait_local(const std::string& id, Duration wait, std::function<void(Time)> woken,
                    uint64_t client, Time now);
    void wake(const std::string& id, Time now);
    std::function<void(Time)> take_waiter(uint64_t serial);

    RouteCandidate candidate(const Name& name, Time now);
    // How long `owner` has to answer a forwarded task now (see forward_timeout).
    Duration forward_timeout(const Name& owner);
    void place(std::shared_ptr<Submission> p, Time now);
    // Coordinator placement, on the entry node: asks the coordinator (the first of the line
    // this submission has not tried) which member runs the task, then sends it there.
    void ask_coordinator(std::shared_ptr<Submission> p, Time now);
    // On the coordinator: the member that should run `spec`, or why none can (503 overloaded,
    // no_quorum, no_match; 422 unknown_type).
    // `avoid`: members the entry tried already.
    std::variant<Name, TaskAnswer> assign(const TaskSpec& spec, const std::vector<Name>& avoid,
                                          Time now);
    // With coordinator_quorum, why this node may not coordinate now (counted as a refusal);
    // nullopt when it may.
    std::optional<TaskAnswer> lacks_quorum();
    // The coordinator's line of succession in this view (core/coordinator.hpp), kept until
    // membership changes.
    const std::vector<Name>& coordinator_line();
    // Whether this node may run `spec` as its own now: any task, but a singleton only on the
    // first of its line (and with quorum when that is asked for).
    bool runs_here(const TaskSpec& spec);
    // Submits to `owner` (this node, or a frame); a refusal or silence places it anew.
    void try_owner(std::shared_ptr<Submission> p, const Name& owner, Time now);
    // 503 held_elsewhere when this node holds the task's copy from an owner that is up and is
    // not `from`.
    std::optional<TaskAnswer> held_elsewhere(const TaskSpec& spec, const Name& from);
    void search(std::shared_ptr<Search> s, Time now);
    // Answers with `current` once its task has finished or `deadline` passed, asking `holder`
    // (this node or another) as the task runs. `submitted`: 202 while unfinished, else 200.
    void follow(const Name& holder, TaskAnswer current, Time deadline, bool submitted, Done done,
                uint64_t client, Time now);
    void on_request(const Name& from, uint64_t link, TaskMessage m, Time now);

    // Sends `m` to `peer` and calls `done` with its reply, or an error on timeout or a broken
    // connection.
    void request(const Name& peer, TaskMessage m, Duration timeout,
                 std::function<void(Result<TaskReply>)> done, Time now);
    // Sends `m` to `peer` and expects no answer (its request number is 0).
    void notify(const Name& peer, TaskMessage m);
    void reply(uint64_t link, TaskReply r, Time now);
    std::optional<Request> take_request(uint64_t id);  // answered or failed: no longer due

    TaskNodeConfig config_;
    Node& node_;
    std::shared_ptr<TaskNode*> alive_ = std::make_shared<TaskNode*>(this);  // for node_'s source
    KeyHash hash_;
    std::set<std::string> handlers_;
    bool journaled_;
    std::optional<Error> journal_error_;
    TaskBoard board_;
    Rng rng_;
    std::optional<Ring> ring_;
    bool ring_stale_ = true;  // membership changed since the ring was last brought up to date
    std::vector<Name> line_;  // coordinator_line()
    bool line_stale_ = true;
    TaskNodeStats stats_;
    TaskOutbox outbox_;
    // The time of the input being handled: what the continuations it calls (answers to
    // requests, waits that end) act at.
    Time now_{};

    // The journal: changes staged so far, and what waits for them to be stored.
    uint64_t changes_ = 0;
    TaskIdMap<Pending> pending_;
    // Journal changes of pending tasks, in change order: what each commit settles.
    std::deque<std::pair<uint64_t, std::string>> staged_;
    // What waits for a change to be stored (a copy kept for another node), in change order.
    std::deque<std::pair<uint64_t, std::function<void(const Status&)>>> after_commit_;
    std::optional<JournalTrouble> journal_failing_;

    bool handing_off_ = false;  // leaving or draining: queued tasks are handed over, not started
    bool draining_ = false;
    bool leaving_ = false;  // hand_off() was called: a drain's end does not take tasks again
    Time drain_until_ = Time::max();
    std::function<void()> drained_;  // what waits for the running tasks to end
    size_t telling_ = 0;             // outcomes sent to holders while leaving, not answered yet

    CopyStore copies_;     // other nodes' tasks; owner = theirs
    CopyTracker tracker_;  // our unfinished tasks' copies
    // Tasks refused at submission (not stored on enough members, or by the journal), newest
    // last: a holder asking about one drops its copy (judge_copy).
    std::set<std::string, std::less<>> declined_;
    std::deque<std::string> declined_order_;
    // Copies that were unfinished at the last check_copies(): asked about at the next one, so
    // only copies at least one interval old are, and a task that ends meanwhile costs nothing.
    std::set<std::string, std::less<>> unfinished_copies_;
    std::set<std::string, std::less<>> orphans_;   // ids in copies_, waiting for an owner
    std::set<std::string, std::less<>> offering_;  // orphans offered to another candidate now
    // Copies whose owner came back under a new incarnation (it may have lost its disk): asked
    // about at the next check rounds, finished ones too, until the owner has answered.
    std::set<std::string, std::less<>> verify_;
    std::set<std::string, std::less<>> verifying_;  // of those, asked and not answered yet
    std::string verify_cursor_;                     // the last asked: the next round goes on
    Time next_verify_ = Time::max();                // the next verify_copies()
    Time next_check_ = Time::max();                 // the next check_copies()

    std::map<Name, PeerLoad> peers_;
    // As coordinator: this node's load as its peers see it (see assign()).
    struct SelfSeen {
        double load = 0;
        Time at{};
        uint32_t sent = 0;  // tasks assigned to itself since `at`
    } self_seen_;
    RttEstimator forward_rtt_;  // every owner's accepted forwards: for an owner with none yet
    std::map<uint64_t, Request> requests_;
    std::set<std::pair<Time, uint64_t>> deadlines_;  // requests_ by deadline
    uint64_t next_request_ = 1;
    std::map<uint64_t, Waiter> waiters_;
    std::set<std::pair<Time, uint64_t>> waiter_deadlines_;
    std::multimap<std::string, uint64_t, std::less<>> waiting_on_;  // task id to waiter serials
    uint64_t next_waiter_ = 1;
};

}  // namespace chorus
