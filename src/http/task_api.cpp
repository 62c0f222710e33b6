// The task and ring endpoints of the API (the API in README.md): JSON in and out, every bad input a
// 4xx with a code and a message that says what to fix, and nothing created when a request is
// refused.
#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/json.hpp"
#include "http/api.hpp"

namespace chorus::http {

namespace {

using nlohmann::json;

// The longest a task request may wait for the task to finish.
constexpr Duration kTaskWaitMax = seconds(300);

// GET /v1/tasks: how many tasks a page lists, by default and at most.
constexpr size_t kTaskListDefault = 50;
constexpr size_t kTaskListMax = 1000;

json epoch_ms(std::optional<Time> t) {
    if (!t || *t == Time{}) return nullptr;
    return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
}

json task_json(const Task& t, bool with_payload) {
    json j = {{"id", t.spec.id},
              {"key", t.spec.key},
              {"type", t.spec.type},
              {"state", to_string(t.state)},
              {"owner", t.owner.str()},
              {"attempts", t.attempts},
              {"timeout_ms",
               std::chrono::duration_cast<std::chrono::milliseconds>(t.spec.timeout).count()},
              {"created_ms", epoch_ms(t.created)},
              {"started_ms", epoch_ms(t.started)},
              {"finished_ms", epoch_ms(t.finished)}};
    if (t.state == TaskState::succeeded) {
        j["result"] = daemon::json_or_string(t.result);
    }
    if (!t.error.empty()) j["error"] = t.error;
    if (t.exit_code) j["exit_code"] = *t.exit_code;
    if (with_payload) j["payload"] = daemon::json_or_string(t.spec.payload);
    j["placement"] = to_string(t.spec.placement);
    if (t.spec.singleton) j["singleton"] = true;
    if (!t.spec.where.empty()) {
        json where = json::object();
        for (const auto& [k, v] : t.spec.where)
            where[k] = v;
        j["where"] = std::move(where);
    }
    return j;
}

Response answer_response(const TaskAnswer& a, bool with_payload) {
    if (!a.code.empty() || !a.task) {
        Response r = error_response(a.status, a.code.empty() ? "error" : a.code, a.message);
        if (a.retry_after > Duration::zero()) {
            r.headers.emplace_back(
                "Retry-After",
                std::to_string(std::chrono::ceil<std::chrono::seconds>(a.retry_after).count()));
        }
        return r;
    }
    json j = task_json(*a.task, with_payload);
    j["forwarded"] = a.forwarded;
    // Members storing the task when it was acknowledged: below tasks.replicas only when
    // min_replicas allowed it.
    if (a.replicas > 0) j["replicas"] = a.replicas;
    Response r;
    r.status = a.status;
    r.body = daemon::dump_json(j);
    r.subject = a.task->spec.id;
    return r;
}

// A POST /v1/tasks body to a task spec; the error response says which field is wrong.
std::optional<Response> read_spec(const json& body, TaskSpec& spec) {
    const auto bad = [](std::string code, std::string message) {
        return error_response(400, code, message);
    };
    if (!body.is_object()) {
        return bad("bad_request",
                   R"(the body must be a JSON object such as {"key": "user:42", "type": "echo", )"
                   R"("payload": {...}})");
    }
    for (const auto& [field, value] : body.items()) {
        if (field == "key") {
            if (!value.is_string()) return bad("bad_key", "key: must be a string");
            spec.key = value.get<std::string>();
        } else if (field == "type") {
            if (!value.is_string())
                return bad("bad_type", "type: must be a string naming a handler");
            spec.type = value.get<std::string>();
        } else if (field == "payload") {
            spec.payload = daemon::dump_json(value);
        } else if (field == "id") {
            if (!value.is_string()) return bad("bad_id", "id: must be a string");
            spec.id = value.get<std::string>();
            if (spec.id.empty())
                return bad("bad_id", "id: must not be empty (leave it out instead)");
        } else if (field == "timeout_ms") {
            if (!value.is_number_unsigned() || value.get<uint64_t>() == 0) {
                return bad("bad_timeout", "timeout_ms: must be a positive whole number");
            }
            spec.timeout = milliseconds(std::min<uint64_t>(value.get<uint64_t>(), UINT32_MAX));
        } else if (field == "where") {
            // The task node checks the names and values against the tag limits.
            const auto strings = [](const json& o) {
                return std::all_of(o.begin(), o.end(), [](const json& v) { return v.is_string(); });
            };
            if (!value.is_object() || !strings(value)) {
                return bad("bad_where",
                           R"(where: must be an object of tag values, such as {"role": "gpu"})");
            }
            for (const auto& [k, v] : value.items())
                spec.where.emplace_back(k, v.get<std::string>());
        } else if (field == "placement") {
            const auto p =
                value.is_string() ? placement_from(value.get<std::string>()) : std::nullopt;
            if (!p) return bad("bad_placement", "placement: must be \"ring\" or \"coordinator\"");
            spec.placement = *p;
        } else if (field == "singleton") {
            if (!value.is_boolean())
                return bad("bad_singleton", "singleton: must be true or false");
            spec.singleton = value.get<bool>();
        } else {
            return bad("unknown_field",
                       fmt::format("'{}' is not a task field (key, type, payload, id, timeout_ms, "
                                   "where, placement, singleton)",
                                   field));
        }
    }
    if (spec.singleton && spec.placement == TaskPlacement::ring && body.contains("placement")) {
        return bad("bad_placement",
                   "placement: a singleton runs on the coordinator; leave placement out");
    }
    if (!body.contains("key")) return bad("missing_key", "key: required, a non-empty string");
    if (!body.contains("type")) {
        return bad("missing_type", "type: required, the name of a handler such as echo or sleep");
    }
    return std::nullopt;
}

}  // namespace

void Api::tasks(const Request& req, const Reply& reply, uint64_t started) {
    const bool collection = req.path == "/v1/tasks";
    const Route route = collection && req.method != "GET" ? task_submit
                        : req.method == "DELETE"          ? task_cancel
                                                          : task_get;
    const auto fail = [&](Response r) { finish(route, started, reply, std::move(r)); };
    if (info_.tasks == nullptr) {
        return fail(error_response(503, "not_supported", "this server runs no tasks"));
    }
    const char* allow = collection ? "GET, POST" : "GET, DELETE";
    if (req.method != "GET" && req.method != (collection ? "POST" : "DELETE")) {
        Response r = error_response(405, "method_not_allowed",
                                    fmt::format("{} supports {} only", req.path, allow));
        r.headers.emplace_back("Allow", allow);
        return fail(std::move(r));
    }
    Duration wait{};
    if (auto it = req.query.find("wait"); it != req.query.end()) {
        auto w = parse_wait(it->second);
        if (!w)
            return fail(error_response(400, "bad_wait", "wait must look like 10s, 500ms or 2m"));
        wait = std::min(*w, kTaskWaitMax);
    }
    const auto answered = [this, route, started, reply](bool with_payload) {
        return [this, route, started, reply, with_payload](TaskAnswer a) {
            finish(route, started, reply, answer_response(a, with_payload));
        };
    };
    if (collection && req.method == "GET") {
        // This node's tasks, for a person or the dashboard: what runs, waits and just ended.
        size_t limit = kTaskListDefault;
        if (auto it = req.query.find("limit"); it != req.query.end()) {
            const std::string& text = it->second;
            size_t n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (ec != std::errc() || end != text.data() + text.size() || n == 0 ||
                n > kTaskListMax) {
                return fail(error_response(400, "bad_limit",
                                           fmt::format("limit must be 1 to {}", kTaskListMax)));
            }
            limit = n;
        }
        json list = json::array();
        for (const Task* t : info_.tasks->board().recent(limit))
            list.push_back(task_json(*t, false));
        Response r;
        r.body = daemon::dump_json({{"node", agent_.node().self().name.str()},
                                    {"running", info_.tasks->board().running()},
                                    {"queued", info_.tasks->board().queued()},
                                    {"tasks", std::move(list)}});
        return finish(route, started, reply, std::move(r));
    }
    if (collection) {
        if (req.body.empty()) {
            return fail(error_response(
                400, "bad_request",
                R"(a task needs a JSON body such as {"key": "user:42", "type": "echo"})"));
        }
        TaskSpec spec;
        spec.placement = info_.tasks->options().placement;  // unless the task says
        if (auto bad = read_spec(req.json, spec)) return fail(std::move(*bad));
        info_.tasks->submit(std::move(spec), wait, answered(false), reply.connection());
        return;
    }
    const std::string id = req.path.substr(std::string_view("/v1/tasks/").size());
    if (id.empty() || id.find('/') != std::string::npos) {
        return fail(
            error_response(404, "not_found", "use /v1/tasks/{id}, with an id from POST /v1/tasks"));
    }
    info_.tasks->query(id, wait, route == task_cancel, answered(route == task_get),
                       reply.connection());
}

void Api::ring_view(const Request& req, const Reply& reply, uint64_t started) {
    if (info_.tasks == nullptr) {
        return finish(ring, started, reply,
                      error_response(503, "not_supported", "this server runs no tasks"));
    }
    daemon::TaskService& t = *info_.tasks;
    Response r;
    if (req.path == "/v1/ring") {
        const Ring& g = t.ring();
        // Whether the members agree on who is on the ring: each says its checksum on its probes
        // and acks (Member::ring_checksum), the last word of each is compared with ours.
        const auto hex = [](uint64_t c) { return fmt::format("{:016x}", c); };
        const auto mine = static_cast<uint32_t>(g.checksum());  // members say the low 32 bits
        json members = json::array();
        size_t agree = 0, differ = 0, unknown = 0;
        for (const auto& [name, share] : g.shares()) {
            const Member* m = agent_.node().members().find(name);
            const uint32_t said = name == agent_.node().self().name ? mine
                                  : m != nullptr                    ? m->ring_checksum
                                                                    : 0;
            ++(said == 0 ? unknown : said == mine ? agree : differ);
            members.push_back(
                {{"name", name.str()},
                 {"share", share},
                 {"load", m == nullptr || m->load_milli == kLoadRefusing
                              ? json(nullptr)
                              : json(m->load_milli / 1000.0)},
                 {"checksum", said == 0 ? json(nullptr) : json(fmt::format("{:08x}", said))}});
        }
        r.body = daemon::dump_json(
            {{"checksum", hex(g.checksum())},
             {"agreement", {{"agree", agree}, {"differ", differ}, {"unknown", unknown}}},
             {"vnodes", t.options().vnodes},
             {"candidates", t.options().candidates},
             {"members", members}});
        return finish(ring, started, reply, std::move(r));
    }
    const auto key = req.query.find("key");
    if (key == req.query.end() || key->second.empty()) {
        return finish(ring, started, reply,
                      error_response(400, "missing_key", "add ?key=K, the key to look up"));
    }
    const auto l = t.lookup(key->second);
    json cs = json::array();
    for (const RouteCandidate& c : l.candidates) {
        cs.push_back({{"name", c.name.str()},
                      {"alive", c.alive},
                      {"accepting", c.accepting},
                      {"quiet", c.quiet},
                      {"phi", std::min(c.phi, 1000.0)},
                      {"load", c.load},
                      {"sent", c.sent}});
    }
    r.body = daemon::dump_json(
        {{"key", key->second},
         {"hash", fmt::format("{:016x}", l.key_hash)},
         {"candidates", cs},
         {"owner", l.choice ? json(l.candidates[*l.choice].name.str()) : json(nullptr)}});
    finish(ring, started, reply, std::move(r));
}

json Api::tasks_summary() const {
    if (info_.tasks == nullptr) return nullptr;
    const daemon::TaskService& t = *info_.tasks;
    json j = {{"handlers", t.handler_names()},
              {"capacity", t.options().limits.capacity},
              {"queue_max", t.options().limits.queue_max},
              {"candidates", t.options().candidates},
              {"replicas", t.options().task_replicas},
              // This node's unfinished tasks stored on fewer members than `replicas`.
              {"under_replicated", t.under_replicated()}};
    if (const auto& e = t.journal_error()) {
        j["journal"] = {{"state", "unavailable"}, {"error", e->message}};
    } else if (const auto& f = t.journal_failing()) {
        j["journal"] = {
            {"state", "failing"},
            {"error", f->error.message},
            {"failing_ms", ms_of(agent_.now() - f->since)},
            {"failures", f->failures},
            // 0 once the backoff is over: it takes tasks again, and the next
            // commit decides.
            {"retry_in_ms", ms_of(std::max(f->retry_at - agent_.now(), Duration::zero()))}};
    } else if (const daemon::Journal* jr = t.journal()) {
        j["journal"] = {{"state", "ok"}, {"path", jr->path()}};
    } else {
        j["journal"] = {{"state", "memory_only"}};
    }
    return j;
}

void Api::task_metrics(Exposition& out) const {
    if (info_.tasks == nullptr) return;
    const daemon::TaskService& t = *info_.tasks;
    const TaskStats& b = t.board().stats();
    out.family("chorus_tasks_total", "counter", "Tasks this node owned, by what became of them.");
    for (const auto& [outcome, v] : {std::pair<const char*, uint64_t>{"accepted", b.accepted},
                                     {"refused", b.refused + t.stats().full},
                                     {"succeeded", b.succeeded},
                                     {"failed", b.failed},
                                     {"timed_out", b.timed_out},
                                     {"cancelled", b.cancelled}})
        out.sample("chorus_tasks_total", static_cast<double>(v), {{"outcome", outcome}});
    out.gauge("chorus_tasks_running", "Tasks running on this node.",
              static_cast<double>(t.board().running()));
    out.gauge("chorus_tasks_queued", "Tasks waiting for a slot on this node.",
              static_cast<double>(t.board().queued()));
    out.gauge("chorus_tasks_kept", "Task records kept (live, and finished for readers).",
              static_cast<double>(t.board().kept()));
    out.counter("chorus_tasks_evicted_total", "Finished tasks dropped by the retention limits.",
                b.evicted);
    const daemon::TaskServiceStats s = t.stats();
    out.family("chorus_task_routing_total", "counter",
               "Tasks this node placed from its clients, by where they went.");
    out.sample("chorus_task_routing_total", static_cast<double>(s.local), {{"placed", "local"}});
    out.sample("chorus_task_routing_total", static_cast<double>(s.forwarded),
               {{"placed", "forwarded"}});
    out.sample("chorus_task_routing_total", static_cast<double>(s.unavailable),
               {{"placed", "unavailable"}});
    out.family("chorus_task_forward_duration_seconds", "histogram",
               "From sending a task to its owner to the owner's acceptance.");
    forward_latency_.write(out, "chorus_task_forward_duration_seconds", {});
    out.counter("chorus_task_forward_retries_total",
                "Candidates passed over after a refusal, a timeout or a broken connection.",
                s.retries);
    out.counter("chorus_task_forward_timeouts_total",
                "Forwarded tasks an owner did not answer in time.", s.forward_timeouts);
    out.counter("chorus_task_dials_abandoned_total",
                "Dials to a peer given up because backlog_bytes_max of frames waited on them.",
                s.backlog_overflows);
    out.counter("chorus_task_frames_unsent_total",
                "Frames taken back unsent: their request timed out while the dial was pending.",
                s.frames_unsent);
    out.counter("chorus_tasks_received_total",
                "Tasks other nodes forwarded here and this node took.", s.remote);
    out.counter("chorus_tasks_unjournaled_total",
                "Tasks refused because the journal could not store them.", s.unjournaled);
    const CopyTrackerStats& c = t.tracker().stats();
    out.family("chorus_task_copies_total", "counter",
               "Copies of this node's tasks sent to other members, by outcome: stored, refused "
               "(or the connection failed), or timeout (no answer within copy_timeout_ms).");
    out.sample("chorus_task_copies_total", static_cast<double>(c.stored), {{"outcome", "stored"}});
    out.sample("chorus_task_copies_total", static_cast<double>(c.refused),
               {{"outcome", "refused"}});
    out.sample("chorus_task_copies_total", static_cast<double>(c.timeouts),
               {{"outcome", "timeout"}});
    out.counter("chorus_task_copies_remade_total",
                "Copies made for acknowledged tasks short of them: their holder went, the owner "
                "restarted or took the task over, or it was acknowledged under min_replicas.",
                c.repaired);
    out.gauge("chorus_tasks_under_replicated",
              "Tasks of this node (unfinished, or finished and kept for readers) stored on "
              "fewer members than tasks.replicas; copied again in the background.",
              static_cast<double>(t.under_replicated()));
    out.counter("chorus_tasks_not_replicated_total",
                "Tasks refused with 503 not_replicated: fewer than min_replicas members stored "
                "them in time, so they never ran.",
                c.declined);
    out.counter("chorus_tasks_acknowledged_short_total",
                "Tasks acknowledged on fewer members than tasks.replicas (min_replicas allowed "
                "it); each is repaired later.",
                c.degraded);
    out.counter("chorus_tasks_taken_over_total",
                "Copies this node ran as its own because their owner died, left or no longer had "
                "the task.",
                s.promoted);
    out.counter("chorus_task_copies_caught_up_total",
                "Copies that missed their task's outcome and learned it by asking the owner.",
                s.caught_up);
    out.counter("chorus_task_orphans_placed_total",
                "Tasks of a dead owner that this node had no room to take over, placed on "
                "another candidate instead.",
                s.orphans_placed);
    out.gauge("chorus_task_orphans",
              "Copies of a dead owner's tasks waiting here for room or for another candidate.",
              static_cast<double>(t.orphans()));
    out.gauge("chorus_task_copies_held", "Copies of other nodes' tasks held here.",
              static_cast<double>(t.copies().size()));
    out.counter("chorus_task_copies_refused_total",
                "Copies other nodes sent that this node refused: its unfinished copies were at "
                "copies_max or copies_bytes_max.",
                s.copies_refused);
    out.counter("chorus_task_copies_not_owner_total",
                "Copy frames refused because the member that sent them is not the task's owner.",
                s.copies_not_owner);
    out.counter("chorus_task_copies_stale_total",
                "Copies refused because this node holds another owner's record of the task, as "
                "far along or further, and that owner is up (a task taken over from an owner "
                "wrongly declared dead, or offered by a slow owner about to refuse it).",
                s.copies_stale);
    out.counter("chorus_task_late_total",
                "Tasks refused: stored after the answer was due (a slow journal); they do not run.",
                s.late);
    out.counter("chorus_task_held_elsewhere_total",
                "Tasks refused with 503 held_elsewhere: this node holds their copy, and their "
                "owner is up (the node that sent them gave up on that owner too soon).",
                s.held_elsewhere);
    out.counter("chorus_task_assigned_total",
                "Tasks this node, as coordinator, assigned to a member (coordinator placement).",
                s.assigned);
    out.counter("chorus_task_overloaded_total",
                "Assignments refused with 503 overloaded: every member that could run the task "
                "was at or above tasks.load_threshold.",
                s.overloaded);
    out.counter("chorus_task_no_quorum_total",
                "Coordinator work refused with 503 no_quorum: this node's view did not hold "
                "a majority (tasks.coordinator_quorum).",
                s.no_quorum);
    out.gauge("chorus_task_copies_unfinished_bytes",
              "Bytes of the unfinished copies held here (limit: copies_bytes_max).",
              static_cast<double>(t.copies().unfinished_bytes()));
    out.gauge("chorus_task_copies_unfinished",
              "Copies held here whose task has not finished, as far as this node knows.",
              static_cast<double>(t.copies().unfinished()));
    if (const daemon::Journal* j = t.journal()) {
        out.gauge("chorus_journal_failing",
                  "1 while the journal's last commit failed and none has succeeded since.",
                  t.journal_failing() ? 1 : 0);
        out.counter("chorus_journal_commits_total", "Journal transactions written and synced.",
                    j->stats().commits);
        out.counter("chorus_journal_failures_total", "Journal commits that failed and rolled back.",
                    j->stats().failures);
    }
}

}  // namespace chorus::http
