#include "core/copy_tracker.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace chorus {

namespace {

bool has(const std::vector<Name>& names, const Name& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
}

}  // namespace

Status CopyTrackerConfig::validate() const {
    const auto bad = [](std::string what) { return Error{"bad_config", std::move(what)}; };
    if (replicas < 1) return bad("replicas: must be at least 1");
    if (min_replicas < 1 || min_replicas > replicas) {
        return bad(fmt::format("min_replicas: must be 1 to replicas ({})", replicas));
    }
    if (copy_timeout <= Duration::zero()) return bad("copy_timeout_ms: must be positive");
    if (repair_backoff <= Duration::zero()) return bad("repair_backoff: must be positive");
    return Ok{};
}

CopyTracker::CopyTracker(CopyTrackerConfig config, Targets targets)
    : config_(config), targets_(std::move(targets)) {
    CHORUS_ASSERT(config_.validate().ok());
    CHORUS_ASSERT(targets_ != nullptr);
}

void CopyTracker::add(std::string id, uint64_t key_hash, Time ack_by, Time now) {
    // A task added twice is the same task: it waits for the later deadline, with the copies
    // it has, and gets a verdict whether or not one was given before (never an assertion: ids
    // come from the network).
    auto [it, fresh] = entries_.emplace(std::move(id), Entry{});
    if (!fresh && it->second.ack_by) ack_by = std::max(ack_by, *it->second.ack_by);
    it->second.key_hash = key_hash;
    it->second.ack_by = ack_by;
    it->second.attempt = std::max(std::min(config_.copy_timeout, (ack_by - now) / 2), Duration{1});
    advance(it->first, it->second, now);
}

void CopyTracker::adopt(std::string id, uint64_t key_hash, std::vector<Name> holders, Time now) {
    auto [it, fresh] = entries_.emplace(std::move(id), Entry{});
    Entry& e = it->second;
    if (!fresh) {  // adopted twice: keep what is known, and make sure nothing waits for a verdict
        e.ack_by.reset();
    }
    e.key_hash = key_hash;
    e.attempt = config_.copy_timeout;
    for (Name& h : holders) {
        if (!has(e.holders, h)) e.holders.push_back(std::move(h));
    }
    advance(it->first, e, now);
}

void CopyTracker::answered(std::string_view id, const Name& from, bool stored, Time now) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    Entry& e = it->second;
    if (e.sending != from) return;  // given up already (timed out, or the member went)
    e.sending.reset();
    if (stored) {
        ++stats_.stored;
        if (!e.ack_by) ++stats_.repaired;
        if (!has(e.holders, from)) e.holders.push_back(from);
    } else {
        ++stats_.refused;
        e.passed.push_back(from);
    }
    advance(it->first, e, now);
}

void CopyTracker::member_gone(const Name& name, Time now) {
    // Affected entries are only marked due: tick() moves them on in due_'s order.
    for (auto& [id, e] : entries_) {
        const bool held = std::erase(e.holders, name) > 0;
        const bool sent = e.sending == name;
        if (sent) e.sending.reset();
        if (held || sent) {
            e.backoff_until = Time{};  // repaired at once, not after a backoff
            schedule(id, e, now);
        }
    }
}

std::vector<Name> CopyTracker::forget(std::string_view id) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return {};
    std::vector<Name> told = std::move(it->second.holders);
    if (it->second.sending) told.push_back(*it->second.sending);
    due_.erase({it->second.due, it->first});
    entries_.erase(it);
    return told;
}

std::vector<Name> CopyTracker::holding(std::string_view id) const {
    auto it = entries_.find(id);
    if (it == entries_.end()) return {};
    std::vector<Name> told = it->second.holders;
    if (it->second.sending) told.push_back(*it->second.sending);
    return told;
}

void CopyTracker::tick(Time now) {
    while (!due_.empty() && due_.begin()->first <= now) {
        const std::string id = due_.begin()->second;
        due_.erase(due_.begin());
        auto it = entries_.find(id);
        CHORUS_ASSERT(it != entries_.end());
        Entry& e = it->second;
        e.due = Time::max();
        if (e.sending && now >= e.sending_until) {
            ++stats_.timeouts;
            e.silent_round = true;
            give_up_sending(id, e);
        }
        advance(id, e, now);
    }
}

Time CopyTracker::next_deadline() const {
    return due_.empty() ? Time::max() : due_.begin()->first;
}

size_t CopyTracker::under_replicated() const {
    return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [&](const auto& kv) {
        return !kv.second.ack_by && stored_on(kv.second) < config_.replicas;
    }));
}

const std::vector<Name>* CopyTracker::holders(std::string_view id) const {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second.holders;
}

void CopyTracker::advance(const std::string& id, Entry& e, Time now) {
    if (stored_on(e) >= config_.replicas) {
        e.attempt = config_.copy_timeout;  // the next repair starts afresh
        e.silent_round = false;
        if (e.ack_by) {
            e.ack_by.reset();
            outbox_.verdicts.push_back(
                CopyVerdict{.id = id, .accepted = true, .replicas = stored_on(e), .why = {}});
        }
        e.passed.clear();
        schedule(id, e, Time::max());
        return;
    }
    if (e.ack_by && now >= *e.ack_by) {
        decide(id, e, now);
        return;
    }
    // The next time to look: a copy's answer is due, or the acknowledgement deadline.
    const auto wake = [&] {
        return e.ack_by ? std::min(e.sending_until, *e.ack_by) : e.sending_until;
    };
    if (e.sending) {
        schedule(id, e, wake());
        return;
    }
    if (!e.ack_by && now < e.backoff_until) {
        schedule(id, e, e.backoff_until);
        return;
    }
    for (Name& to : targets_(id, e.key_hash)) {
        if (has(e.holders, to) || has(e.passed, to)) continue;
        e.sending = to;
        e.sending_until = now + e.attempt;
        outbox_.sends.push_back(CopySend{.id = id, .to = std::move(to), .within = e.attempt});
        schedule(id, e, wake());
        return;
    }
    // Every member was tried this round.
    if (e.ack_by) {
        decide(id, e, now);
        return;
    }
    // Every member refused or was silent. After a silence the next round gives each twice as
    // long (TCP's retransmission backoff), so a member that answers late, or this node when it
    // is the slow one, stores the copy in the end instead of being given up on every time.
    e.passed.clear();
    if (std::exchange(e.silent_round, false))
        e.attempt = std::min(e.attempt * 2, config_.copy_timeout * kAttemptGrowthMax);
    e.backoff_until = now + config_.repair_backoff;
    schedule(id, e, e.backoff_until);
}

void CopyTracker::decide(const std::string& id, Entry& e, Time now) {
    const uint32_t on = stored_on(e);
    if (on >= config_.min_replicas) {
        ++stats_.degraded;
        e.ack_by.reset();
        e.attempt = config_.copy_timeout;
        outbox_.verdicts.push_back(
            CopyVerdict{.id = id, .accepted = true, .replicas = on, .why = {}});
        advance(id, e, now);  // repaired from here on, starting with whom it has not tried
        return;
    }
    ++stats_.declined;
    std::vector<std::string> tried;
    for (const Name& n : e.passed)
        tried.push_back(n.str());
    if (e.sending) tried.push_back(e.sending->str() + " (no answer yet)");
    CopyVerdict v{.id = id, .accepted = false, .replicas = on, .why = {}};
    v.why = tried.empty()
                ? fmt::format("no other alive member to store a copy ({} of {} members needed)", on,
                              config_.min_replicas)
                : fmt::format("{} of {} members needed stored the task in time; tried {}", on,
                              config_.min_replicas, fmt::join(tried, ", "));
    outbox_.verdicts.push_back(std::move(v));
    const std::string key = id;  // `id` may be the entry's own key, which forget() frees
    for (Name& h : forget(key))
        outbox_.drops.push_back(CopyDrop{.id = key, .to = std::move(h)});
}

void CopyTracker::give_up_sending(const std::string& id, Entry& e) {
    outbox_.drops.push_back(CopyDrop{.id = id, .to = *e.sending});
    e.passed.push_back(*e.sending);
    e.sending.reset();
}

void CopyTracker::schedule(const std::string& id, Entry& e, Time at) {
    if (e.due == at) return;
    if (e.due != Time::max()) due_.erase({e.due, id});
    e.due = at;
    if (at != Time::max()) due_.emplace(at, id);
}

}  // namespace chorus
