// Copies of other nodes' tasks held on this one (ARCHITECTURE.md, "Tasks"): stored when an owner
// sends one before acknowledging its task, brought up to date when the task ends, and run here if
// the owner dies. Pure bookkeeping; the driver journals and answers.
//
// Owners elsewhere decide how many copies arrive, so the store is bounded on both counts:
// unfinished copies by number and bytes (a new one beyond either is refused, and its owner
// looks for another member), finished ones by number and bytes, the oldest finished going
// first, as the board keeps results for readers.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/task.hpp"

namespace chorus {

struct CopyLimits {
    // Unfinished copies held at once, and their bytes (Task::bytes). Every other node owns at
    // most capacity + queue_max unfinished tasks and copies each to one holder, so a node
    // holds about one node's worth; the defaults leave room for eight.
    size_t unfinished_max = 8 * (16 + 1024);
    size_t unfinished_bytes_max = 256u << 20;
    // Finished copies kept for readers (a result that outlives its owner).
    size_t finished_max = 10'000;
    size_t finished_bytes_max = 256u << 20;
};

// What the holder of an unfinished copy does with its owner's answer to "how does this task
// stand?" (the copy check, ARCHITECTURE.md "Tasks"). `status` and `code` are the owner's
// reply's; `task` its record, if it sent one.
enum class CopyCheck : uint8_t {
    wait,       // still running there, or no clear answer: ask again next round
    update,     // the owner's record says how it ended: the copy takes it
    take_over,  // the owner is up and has no such task (its disk was lost): run it here
    drop,       // the owner refused the task when it was submitted: it must never run
};
CopyCheck judge_copy(const Name& owner, uint16_t status, std::string_view code,
                     const std::optional<Task>& task);

class CopyStore {
  public:
    explicit CopyStore(CopyLimits limits) : limits_(limits) {}

    // Stores `t`, or updates the copy held under its id. Error `copies_full`: a new unfinished
    // copy that would pass either limit (nothing changes). An update of a copy already held is
    // always taken: it only moves toward finished. Returns the ids of finished copies that
    // retention dropped (the driver removes them from its journal).
    Result<std::vector<std::string>> put(Task t);
    // Puts back a copy read from the journal after a restart, whatever the limits: nothing
    // stored is dropped because they shrank.
    void restore(Task t);

    const Task* find(std::string_view id) const;
    // Removes the copy and hands it over (a take-over); nullopt if none is held.
    std::optional<Task> take(std::string_view id);
    bool erase(std::string_view id);

    size_t size() const { return copies_.size(); }
    size_t unfinished() const { return unfinished_; }
    size_t unfinished_bytes() const { return unfinished_bytes_; }
    size_t finished_bytes() const { return finished_bytes_; }
    const CopyLimits& limits() const { return limits_; }

    // Every copy, in no particular order.
    template <typename F>
    void for_each(F&& f) const {
        for (const auto& [id, t] : copies_)
            f(t);
    }

  private:
    void count(const Task& t, int sign);
    std::vector<std::string> expire();

    CopyLimits limits_;
    TaskIdMap<Task> copies_;
    std::deque<std::string> finished_order_;  // retention: oldest finished first (may be stale)
    size_t unfinished_ = 0;
    size_t unfinished_bytes_ = 0;
    size_t finished_ = 0;
    size_t finished_bytes_ = 0;
};

}  // namespace chorus
