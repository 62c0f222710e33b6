#include "core/copies.hpp"

#include <fmt/format.h>

namespace chorus {

void CopyStore::count(const Task& t, int sign) {
    const auto apply = [sign](size_t& n, size_t by) { n = sign > 0 ? n + by : n - by; };
    if (is_finished(t.state)) {
        apply(finished_, 1);
        apply(finished_bytes_, t.bytes());
    } else {
        apply(unfinished_, 1);
        apply(unfinished_bytes_, t.bytes());
    }
}

Result<std::vector<std::string>> CopyStore::put(Task t) {
    auto it = copies_.find(t.spec.id);
    if (it == copies_.end() && !is_finished(t.state) &&
        (unfinished_ + 1 > limits_.unfinished_max ||
         unfinished_bytes_ + t.bytes() > limits_.unfinished_bytes_max)) {
        return Error{"copies_full",
                     fmt::format("this node holds {} unfinished copies ({} bytes), the most it "
                                 "keeps for other nodes",
                                 unfinished_, unfinished_bytes_)};
    }
    const bool finished = is_finished(t.state);
    const std::string id = t.spec.id;
    if (it != copies_.end()) {
        count(it->second, -1);
        it->second = std::move(t);
    } else {
        it = copies_.emplace(id, std::move(t)).first;
    }
    count(it->second, +1);
    if (finished) finished_order_.push_back(id);
    return expire();
}

void CopyStore::restore(Task t) {
    const std::string id = t.spec.id;
    if (copies_.contains(id)) return;
    const bool finished = is_finished(t.state);
    auto it = copies_.emplace(id, std::move(t)).first;
    count(it->second, +1);
    if (finished) finished_order_.push_back(id);
}

std::vector<std::string> CopyStore::expire() {
    std::vector<std::string> dropped;
    while ((finished_ > limits_.finished_max || finished_bytes_ > limits_.finished_bytes_max) &&
           !finished_order_.empty()) {
        std::string id = std::move(finished_order_.front());
        finished_order_.pop_front();
        auto it = copies_.find(id);
        // Stale entries: the copy went meanwhile (erased, taken), or was listed twice.
        if (it == copies_.end() || !is_finished(it->second.state)) continue;
        count(it->second, -1);
        copies_.erase(it);
        dropped.push_back(std::move(id));
    }
    // The order list holds ids of copies that went by other ways too; keep it from growing
    // past what it tracks.
    if (finished_order_.size() > 2 * (finished_ + 16)) {
        std::erase_if(finished_order_, [&](const std::string& id) {
            auto it = copies_.find(id);
            return it == copies_.end() || !is_finished(it->second.state);
        });
    }
    return dropped;
}

CopyCheck judge_copy(const Name& owner, uint16_t status, std::string_view code,
                     const std::optional<Task>& task) {
    if (status == 200 && task && task->owner == owner) {
        return is_finished(task->state) ? CopyCheck::update : CopyCheck::wait;
    }
    // A drop is a notification: one lost with a broken connection leaves a copy of a task its
    // owner refused. The owner remembers what it refused, and says so.
    if (status == 410 && code == "task_declined") return CopyCheck::drop;
    // Up, and with no such task: it lost it (a journal gone with its disk), and this copy is
    // the only one left. (A finished task the owner has since evicted runs again too: at least
    // once, as after any crash.)
    if (status == 404) return CopyCheck::take_over;
    return CopyCheck::wait;
}

const Task* CopyStore::find(std::string_view id) const {
    auto it = copies_.find(id);
    return it == copies_.end() ? nullptr : &it->second;
}

std::optional<Task> CopyStore::take(std::string_view id) {
    auto it = copies_.find(id);
    if (it == copies_.end()) return std::nullopt;
    count(it->second, -1);
    Task t = std::move(it->second);
    copies_.erase(it);
    return t;
}

bool CopyStore::erase(std::string_view id) {
    return take(id).has_value();
}

}  // namespace chorus
