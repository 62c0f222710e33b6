// Where the copies of this node's tasks are: the owner's side of copies (ARCHITECTURE.md,
// "Tasks"). Sans-IO, in Node's shape: inputs carry `now`, effects go to an outbox the driver
// drains after every call, and the driver calls tick() at next_deadline().
//
// The promise: a task is acknowledged only once `replicas` distinct members store it, this
// node and replicas - 1 holders of a copy. A task's copies go out one at a time, to the alive
// members of its key's preference list in order (the driver's `Targets`). A member that
// refuses, or does not answer within copy_timeout, is passed over for the next; it is told to
// drop what it may store late, so that no member holds a copy its owner does not know of (it
// would run the task a second time when the owner died). When the acknowledgement deadline
// comes first, or no member is left to try, the task is acknowledged with the copies it has
// if that makes at least min_replicas, and refused otherwise (its copies dropped: nothing
// runs).
//
// Copies are repaired. An acknowledged task with fewer than `replicas` members storing it
// (a holder died, the task was acknowledged under min_replicas, it was recovered after a
// restart or taken over from a dead owner, which leaves its holders unknown) is copied again
// in the background until it has them all, waiting repair_backoff between rounds in which no
// member took one. under_replicated() counts those tasks (HDFS's under-replicated blocks).
// A finished task stays tracked while this node keeps its result, so the outcome a client
// reads survives a holder's loss as the task did.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/name.hpp"
#include "core/result.hpp"
#include "core/task.hpp"
#include "core/time.hpp"

namespace chorus {

struct CopyTrackerConfig {
    // Members storing each task, this node included: 1 keeps no copy elsewhere.
    uint32_t replicas = 2;
    // The fewest members that may store a task when it is acknowledged (Kafka's
    // min.insync.replicas). Equal to `replicas` by default: a 2xx means every copy is stored.
    // Lower trades that promise for availability: a task is then acknowledged with fewer
    // copies when no member stores one in time, says so, and is repaired later.
    uint32_t min_replicas = 2;
    // How long one member has to store a copy before the next one is tried. For a task waiting
    // to be acknowledged, at most half the time it has: a silent member always leaves another
    // its chance before the deadline. A repair round that stores nothing, and in which a member
    // was silent, doubles it for the next, up to kAttemptGrowthMax times.
    Duration copy_timeout = milliseconds(500);
    // How long an under-replicated task waits after a round in which no member stored it.
    Duration repair_backoff = seconds(1);

    Status validate() const;
};

struct CopySend {  // send the task's copy to `to`; answer with answered()
    std::string id;
    Name to;
    Duration within{};  // how long `to` has: the tracker gives up on it then
};
struct CopyDrop {  // `to` must forget its copy of the task, if it holds one
    std::string id;
    Name to;
};
struct CopyVerdict {  // a task waiting for its copies may be acknowledged, or must be refused
    std::string id;
    bool accepted = false;
    uint32_t replicas = 0;  // members storing the task now, this node included
    std::string why;        // refused: what was tried
};

struct CopyOutbox {
    std::vector<CopySend> sends;
    std::vector<CopyDrop> drops;
    std::vector<CopyVerdict> verdicts;
    void clear() {
        sends.clear();
        drops.clear();
        verdicts.clear();
    }
    bool empty() const { return sends.empty() && drops.empty() && verdicts.empty(); }
};

struct CopyTrackerStats {
    uint64_t stored = 0;    // copies a member stored
    uint64_t refused = 0;   // copies a member refused, or a failed connection lost
    uint64_t timeouts = 0;  // copies not answered within copy_timeout
    uint64_t repaired = 0;  // of `stored`, the ones made for tasks already acknowledged
    uint64_t degraded = 0;  // tasks acknowledged with fewer than `replicas` members
    uint64_t declined = 0;  // tasks refused: fewer than min_replicas members stored them
};

class CopyTracker {
  public:
    // A repair's attempts grow to at most this many times copy_timeout.
    static constexpr int kAttemptGrowthMax = 16;
    // The alive members that may hold a copy of task `id` (whose key has this hash), in the
    // key's preference order, this node excluded: those the task's constraints allow.
    using Targets = std::function<std::vector<Name>(const std::string& id, uint64_t key_hash)>;

    CopyTracker(CopyTrackerConfig config, Targets targets);

    // ---- inputs ----

    // A task accepted here waits for its copies until `ack_by`; a verdict says how it went.
    void add(std::string id, uint64_t key_hash, Time ack_by, Time now);
    // A task this node answers for already (recovered after a restart, taken over from a dead
    // owner): its copies are made in the background. `holders`: members known to store one.
    void adopt(std::string id, uint64_t key_hash, std::vector<Name> holders, Time now);
    // What `from` answered to a CopySend. A late answer, after the copy was given up, is
    // ignored: its drop is on the way.
    void answered(std::string_view id, const Name& from, bool stored, Time now);
    // A member died or left: the copies it held are gone, and one it was sent is given up.
    void member_gone(const Name& name, Time now);
    // The task leaves this node (the retention limits dropped its result, it was handed over,
    // or its journal refused it) and the tracker. Returns the members that hold a copy or were
    // sent one: the driver tells them to drop it, if it must. A verdict still due is not given.
    std::vector<Name> forget(std::string_view id);
    // The members that hold a copy of the task or were sent one: when the task ends, the
    // driver tells them its outcome (on the same links, after the copy). Its entry stays: the
    // outcome is kept on `replicas` members too, and repaired, while this node keeps it.
    std::vector<Name> holding(std::string_view id) const;
    void tick(Time now);
    // When tick() has something to do next; Time::max() if nothing waits.
    Time next_deadline() const;

    // ---- outputs and state ----

    CopyOutbox& outbox() { return outbox_; }
    // Acknowledged tasks stored on fewer than `replicas` members.
    size_t under_replicated() const;
    // Members known to store a copy of the task; nullptr if it is not tracked.
    const std::vector<Name>* holders(std::string_view id) const;
    bool contains(std::string_view id) const { return entries_.contains(id); }
    size_t size() const { return entries_.size(); }
    const CopyTrackerConfig& config() const { return config_; }
    const CopyTrackerStats& stats() const { return stats_; }

  private:
    struct Entry {
        uint64_t key_hash = 0;
        std::vector<Name> holders;
        std::optional<Name> sending;  // a copy sent and not answered yet
        Time sending_until{};         // when it is given up
        std::vector<Name> passed;     // refused or silent since the last round began
        std::optional<Time> ack_by;   // waiting to be acknowledged
        Duration attempt{};           // how long each member has to answer
        Time backoff_until{};         // a repair round found nobody: the next waits till then
        bool silent_round = false;    // a member was given up on for silence this round
        Time due = Time::max();       // when tick() looks at it next (in due_)
    };

    // Moves a task on: a verdict, a copy to send, or a wait.
    void advance(const std::string& id, Entry& e, Time now);
    // The acknowledgement deadline passed, or nobody is left to try.
    void decide(const std::string& id, Entry& e, Time now);
    void give_up_sending(const std::string& id, Entry& e);
    void schedule(const std::string& id, Entry& e, Time at);
    uint32_t stored_on(const Entry& e) const { return 1 + static_cast<uint32_t>(e.holders.size()); }

    CopyTrackerConfig config_;
    Targets targets_;
    TaskIdMap<Entry> entries_;
    // Entries by the time they need attention: tick() visits them in this order, so what it
    // emits does not depend on the hash map's order.
    std::set<std::pair<Time, std::string>, std::less<>> due_;
    CopyOutbox outbox_;
    CopyTrackerStats stats_;
};

}  // namespace chorus
