#include "core/task.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace chorus {

std::string_view to_string(TaskState s) {
    switch (s) {
        case TaskState::queued:
            return "queued";
        case TaskState::running:
            return "running";
        case TaskState::succeeded:
            return "succeeded";
        case TaskState::failed:
            return "failed";
        case TaskState::timed_out:
            return "timed_out";
        case TaskState::cancelled:
            return "cancelled";
        case TaskState::lost:
            return "lost";
    }
    return "unknown";
}

std::string_view to_string(TaskPlacement p) {
    return p == TaskPlacement::coordinator ? "coordinator" : "ring";
}

std::optional<TaskPlacement> placement_from(std::string_view text) {
    if (text == "ring") return TaskPlacement::ring;
    if (text == "coordinator") return TaskPlacement::coordinator;
    return std::nullopt;
}

size_t Task::bytes() const {
    // The strings dominate; the fixed part is a rough constant for the record and its indexes.
    size_t where = 0;
    for (const auto& [k, v] : spec.where)
        where += k.size() + v.size();
    return 256 + spec.id.size() + spec.key.size() + spec.type.size() + spec.payload.size() + where +
           owner.size() + result.size() + error.size();
}

bool fits(const Tags& tags, const TaskSpec& spec) {
    if (find_tag(tags, kDrainTag) != nullptr) return false;
    if (const std::string* handlers = find_tag(tags, kHandlersTag)) {
        bool found = false;
        for (size_t at = 0; at <= handlers->size() && !found;) {
            const size_t comma = std::min(handlers->find(',', at), handlers->size());
            found = std::string_view(*handlers).substr(at, comma - at) == spec.type;
            at = comma + 1;
        }
        if (!found) return false;
    }
    for (const auto& [k, v] : spec.where) {
        const std::string* have = find_tag(tags, k);
        if (have == nullptr || *have != v) return false;
    }
    return true;
}

std::string make_task_id(uint64_t key_hash, uint64_t unique) {
    return fmt::format("{:016x}-{:016x}", key_hash, unique);
}

std::string make_task_id(uint64_t key_hash, std::string_view name) {
    return fmt::format("{:016x}-{}", key_hash, name);
}

bool valid_task_name(std::string_view name) {
    if (name.empty() || name.size() > kTaskNameMax) return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<uint64_t> task_key_hash(std::string_view id) {
    if (id.size() < 18 || id[16] != '-' || !valid_task_name(id.substr(17))) return std::nullopt;
    uint64_t hash = 0;
    for (const char c : id.substr(0, 16)) {
        uint64_t digit = 0;
        if (c >= '0' && c <= '9') {
            digit = static_cast<uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            digit = static_cast<uint64_t>(c - 'a' + 10);
        } else {
            return std::nullopt;
        }
        hash = hash << 4 | digit;
    }
    return hash;
}

Status TaskLimits::validate() const {
    const auto bad = [](std::string what) { return Error{"bad_config", std::move(what)}; };
    if (capacity == 0) return bad("capacity: must be at least 1");
    if (results_max == 0) return bad("results_max: must be at least 1");
    if (payload_bytes_max == 0) return bad("payload_bytes_max: must be at least 1");
    if (result_bytes_max == 0) return bad("result_bytes_max: must be at least 1");
    if (timeout_default <= Duration::zero() || timeout_default > timeout_max) {
        return bad("timeout_default_ms: must be positive and at most timeout_max_ms");
    }
    return Ok{};
}

TaskBoard::TaskBoard(TaskLimits limits) : limits_(limits) {
    CHORUS_ASSERT(limits_.validate().ok());
}

uint32_t TaskBoard::load_milli() const {
    const uint64_t live = slots_.size() + queue_.size();
    return static_cast<uint32_t>(live * 1000 / limits_.capacity);
}

Result<const Task*> TaskBoard::submit(TaskSpec spec, Name owner, Time now) {
    if (tasks_.contains(spec.id)) {
        return Error{"task_exists", fmt::format("a task with id {} exists already", spec.id)};
    }
    if (slots_.size() + queue_.size() >= size_t{limits_.capacity} + limits_.queue_max) {
        ++stats_.refused;
        return Error{"full", fmt::format("{} tasks running and {} queued, the most this node takes",
                                         slots_.size(), queue_.size())};
    }
    return admit(std::move(spec), std::move(owner), now);
}

Result<const Task*> TaskBoard::admit(TaskSpec spec, Name owner, Time now) {
    if (tasks_.contains(spec.id)) {
        return Error{"task_exists", fmt::format("a task with id {} exists already", spec.id)};
    }
    ++stats_.accepted;
    std::string id = spec.id;
    Task t;
    t.spec = std::move(spec);
    t.owner = std::move(owner);
    t.created = now;
    auto [it, inserted] = tasks_.emplace(id, std::move(t));
    CHORUS_ASSERT(inserted);
    queue_.push_back(std::move(id));
    return &it->second;
}

std::vector<std::string> TaskBoard::start_ready(Time now) {
    std::vector<std::string> started;
    while (!queue_.empty() && slots_.size() < limits_.capacity) {
        std::string id = std::move(queue_.front());
        queue_.pop_front();
        Task& t = tasks_.at(id);
        CHORUS_ASSERT(t.state == TaskState::queued);
        t.state = TaskState::running;
        t.started = now;
        ++t.attempts;
        slots_.insert(id);
        started.push_back(std::move(id));
    }
    return started;
}

bool TaskBoard::finish(std::string_view id, TaskOutcome outcome, Time now) {
    const auto slot = slots_.find(id);
    if (slot == slots_.end()) return false;
    slots_.erase(slot);
    Task& t = tasks_.find(id)->second;
    if (t.state != TaskState::running) return false;  // cancelled while it ran
    CHORUS_ASSERT(is_finished(outcome.state) && outcome.state != TaskState::cancelled);
    t.state = outcome.state;
    t.result = std::move(outcome.result);
    t.error = std::move(outcome.error);
    t.exit_code = outcome.exit_code;
    retire(t, now);
    return true;
}

TaskBoard::Cancel TaskBoard::cancel(std::string_view id, Time now) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return Cancel::not_found;
    Task& t = it->second;
    if (is_finished(t.state)) return Cancel::already_finished;
    const bool was_running = t.state == TaskState::running;
    if (!was_running) std::erase(queue_, t.spec.id);
    t.state = TaskState::cancelled;
    t.error = "cancelled by a client";
    retire(t, now);
    return was_running ? Cancel::running : Cancel::cancelled;
}

void TaskBoard::retire(Task& t, Time now) {
    t.finished = now;
    switch (t.state) {
        case TaskState::succeeded:
            ++stats_.succeeded;
            break;
        case TaskState::failed:
            ++stats_.failed;
            break;
        case TaskState::timed_out:
            ++stats_.timed_out;
            break;
        case TaskState::cancelled:
            ++stats_.cancelled;
            break;
        default:
            break;
    }
    finished_.push_back(t.spec.id);
    finished_bytes_ += t.bytes();
    expire(now);
}

void TaskBoard::expire(Time now) {
    while (!finished_.empty()) {
        auto it = tasks_.find(finished_.front());
        CHORUS_ASSERT(it != tasks_.end() && it->second.finished);
        const Task& t = it->second;
        const bool over = finished_.size() > limits_.results_max ||
                          finished_bytes_ > limits_.results_bytes_max ||
                          now - *t.finished > limits_.results_ttl;
        // A cancelled task still stopping keeps its record until its slot is free.
        if (!over || slots_.contains(t.spec.id)) break;
        finished_bytes_ -= t.bytes();
        ++stats_.evicted;
        evicted_.push_back(t.spec.id);
        tasks_.erase(it);
        finished_.pop_front();
    }
}

void TaskBoard::restore(Task t, Time now) {
    if (tasks_.contains(t.spec.id)) return;
    const std::string id = t.spec.id;
    if (is_finished(t.state)) {
        Task& kept = tasks_.emplace(id, std::move(t)).first->second;
        finished_.push_back(id);
        finished_bytes_ += kept.bytes();
        expire(now);
        return;
    }
    t.state = TaskState::queued;
    t.started.reset();
    tasks_.emplace(id, std::move(t));
    queue_.push_back(id);
}

bool TaskBoard::hand_over(std::string_view id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.state != TaskState::queued) return false;
    std::erase(queue_, it->second.spec.id);
    tasks_.erase(it);
    return true;
}

std::vector<const Task*> TaskBoard::recent(size_t n) const {
    std::vector<const Task*> out;
    const auto add = [&](auto first, auto last) {
        for (; first != last && out.size() < n; ++first)
            if (const Task* t = find(*first)) out.push_back(t);
    };
    add(slots_.begin(), slots_.end());
    add(queue_.begin(), queue_.end());
    add(finished_.rbegin(), finished_.rend());  // newest first
    return out;
}

const Task* TaskBoard::find(std::string_view id) const {
    auto it = tasks_.find(id);
    return it == tasks_.end() ? nullptr : &it->second;
}

}  // namespace chorus
