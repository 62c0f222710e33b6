#include "wire/codec.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "chorus_generated.h"
#include "core/text.hpp"

namespace chorus::wire {

namespace fb = flatbuffers;
namespace gen = chorus::schema;

std::string_view to_string(DecodeError e) {
    switch (e) {
        case DecodeError::too_large:
            return "too_large";
        case DecodeError::malformed:
            return "malformed";
        case DecodeError::wrong_version:
            return "wrong_version";
        case DecodeError::wrong_cluster:
            return "wrong_cluster";
        case DecodeError::bad_field:
            return "bad_field";
        case DecodeError::bad_encoding:
            return "bad_encoding";
        case DecodeError::unsealed:
            return "unsealed";
    }
    return "unknown";
}

uint64_t DecodeStats::total() const {
    return std::accumulate(rejected.begin(), rejected.end(), 0ull);
}

Limits limits_for(const Config& c, const TaskLimits& t) {
    Limits l;
    l.task_key_bytes_max = t.key_bytes_max;
    l.task_payload_bytes_max = t.payload_bytes_max;
    l.task_result_bytes_max = t.result_bytes_max;
    l.cluster = c.cluster;
    l.packet_bytes_max = c.packet_bytes_max;
    l.name_bytes_max = c.name_bytes_max;
    l.tags_max = c.tags_max;
    l.tag_bytes_max = c.tag_bytes_max;
    l.members_max = c.members_max;
    return l;
}

// ---------------------------------------------------------------------------------------------
// Encoding

namespace {

// The most members a TaskSubmit's avoid list may name: an entry tries at most `candidates`
// (16 at most) members for one task.
constexpr size_t kAvoidMax = 16;

// Empty strings are left out of the buffer (an absent field reads back as empty).
fb::Offset<fb::String> str(fb::FlatBufferBuilder& b, std::string_view s) {
    return s.empty() ? 0 : b.CreateString(s.data(), s.size());
}
fb::Offset<fb::String> str(fb::FlatBufferBuilder& b, const std::string& s) {
    return str(b, std::string_view(s));
}
fb::Offset<fb::String> str(fb::FlatBufferBuilder& b, const Name& n) {
    return str(b, n.view());
}

// The 32-bit field of an incarnation, for readers that know no other: capped, never wrapped.
uint32_t inc32(Incarnation i) {
    return static_cast<uint32_t>(std::min<uint64_t>(i.value, UINT32_MAX));
}

fb::Offset<fb::Vector<fb::Offset<gen::Tag>>> tags(fb::FlatBufferBuilder& b, const Tags& t) {
    if (t.empty()) return 0;
    std::vector<fb::Offset<gen::Tag>> out;
    out.reserve(t.size());
    for (const auto& [k, v] : t)
        out.push_back(gen::CreateTag(b, str(b, k), str(b, v)));
    return b.CreateVector(out);
}

std::pair<gen::Update, fb::Offset<void>> update(fb::FlatBufferBuilder& b, const Update& u) {
    return std::visit(
        [&](const auto& x) -> std::pair<gen::Update, fb::Offset<void>> {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, AliveUpdate>) {
                return {gen::Update::Alive,
                        gen::CreateAlive(b, str(b, x.name), str(b, x.addr.value), str(b, x.http),
                                         inc32(x.incarnation), tags(b, x.tags), x.protocol,
                                         x.incarnation.value)
                            .Union()};
            } else if constexpr (std::is_same_v<T, SuspectUpdate>) {
                return {gen::Update::Suspect,
                        gen::CreateSuspect(b, str(b, x.name), inc32(x.incarnation), str(b, x.from),
                                           x.incarnation.value)
                            .Union()};
            } else {
                return {gen::Update::Dead,
                        gen::CreateDead(b, str(b, x.name), inc32(x.incarnation), str(b, x.from),
                                        x.left, x.incarnation.value, x.prune)
                            .Union()};
            }
        },
        u);
}

std::pair<gen::Body, fb::Offset<void>> body(fb::FlatBufferBuilder& b, const Body& body) {
    return std::visit(
        [&](const auto& x) -> std::pair<gen::Body, fb::Offset<void>> {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
                return {gen::Body::NONE, 0};
            } else if constexpr (std::is_same_v<T, Ping>) {
                return {gen::Body::Ping, gen::CreatePing(b, x.seq, str(b, x.target)).Union()};
            } else if constexpr (std::is_same_v<T, PingReq>) {
                return {gen::Body::PingReq,
                        gen::CreatePingReq(b, x.seq, str(b, x.target), str(b, x.target_addr.value))
                            .Union()};
            } else if constexpr (std::is_same_v<T, Ack>) {
                return {gen::Body::Ack, gen::CreateAck(b, x.seq).Union()};
            } else {
                return {gen::Body::Nack, gen::CreateNack(b, x.seq).Union()};
            }
        },
        body);
}

std::vector<uint8_t> finish(fb::FlatBufferBuilder& b) {
    return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

}  // namespace

std::vector<uint8_t> encode(const Packet& p) {
    fb::FlatBufferBuilder b(256);
    std::vector<gen::Update> types;
    std::vector<fb::Offset<void>> values;
    types.reserve(p.updates.size());
    values.reserve(p.updates.size());
    for (const auto& u : p.updates) {
        auto [t, v] = update(b, u);
        types.push_back(t);
        values.push_back(v);
    }
    const auto [body_type, body_value] = body(b, p.body);
    const auto types_vec = types.empty() ? 0 : b.CreateVector(types);
    const auto values_vec = values.empty() ? 0 : b.CreateVector(values);
    b.Finish(gen::CreatePacket(b, p.version, str(b, p.cluster), str(b, p.sender),
                               str(b, p.sender_addr.value), p.sender_load_milli, body_type,
                               body_value, types_vec, values_vec, p.sender_ring_checksum));
    return finish(b);
}

std::vector<uint8_t> encode(const PushPull& p) {
    fb::FlatBufferBuilder b(1024 + 96 * p.members.size());
    std::vector<fb::Offset<gen::MemberSnapshot>> members;
    members.reserve(p.members.size());
    for (const auto& m : p.members) {
        members.push_back(gen::CreateMemberSnapshot(
            b, str(b, m.name), str(b, m.addr.value), str(b, m.http), inc32(m.incarnation),
            static_cast<gen::MemberState>(m.state), tags(b, m.tags), m.load_milli, m.protocol,
            m.incarnation.value));
    }
    const auto pp = gen::CreatePushPull(b, p.join, b.CreateVector(members));
    b.Finish(gen::CreateFrame(b, p.version, str(b, p.cluster), str(b, p.sender),
                              gen::Message::PushPull, pp.Union()));
    return finish(b);
}

namespace {

uint64_t epoch_ms(std::optional<Time> t) {
    if (!t) return 0;
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count());
}

uint32_t clamp_ms(Duration d) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return static_cast<uint32_t>(std::clamp<int64_t>(ms, 0, UINT32_MAX));
}

fb::Offset<fb::Vector<fb::Offset<fb::String>>> names(fb::FlatBufferBuilder& b,
                                                     const std::vector<Name>& list) {
    if (list.empty()) return 0;
    std::vector<fb::Offset<fb::String>> out;
    for (size_t i = 0; i < list.size() && i < kAvoidMax; ++i)
        out.push_back(str(b, list[i]));
    return b.CreateVector(out);
}

fb::Offset<gen::TaskSpec> task_spec(fb::FlatBufferBuilder& b, const TaskSpec& t) {
    return gen::CreateTaskSpec(b, str(b, t.id), str(b, t.key), str(b, t.type), str(b, t.payload),
                               clamp_ms(t.timeout), tags(b, t.where),
                               static_cast<uint8_t>(t.placement), t.singleton);
}

fb::Offset<gen::TaskStatus> task_status(fb::FlatBufferBuilder& b, const Task& t) {
    const auto spec = task_spec(b, t.spec);
    return gen::CreateTaskStatus(b, spec, static_cast<gen::TaskState>(t.state), str(b, t.owner),
                                 str(b, t.result), str(b, t.error), t.exit_code.has_value(),
                                 t.exit_code.value_or(0), epoch_ms(t.created), epoch_ms(t.started),
                                 epoch_ms(t.finished), t.attempts);
}

std::pair<gen::Message, fb::Offset<void>> task_message(fb::FlatBufferBuilder& b,
                                                       const TaskMessage& m) {
    return std::visit(
        [&](const auto& x) -> std::pair<gen::Message, fb::Offset<void>> {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, TaskSubmit>) {
                return {gen::Message::TaskSubmit,
                        gen::CreateTaskSubmit(b, x.request, task_spec(b, x.spec),
                                              clamp_ms(x.budget), x.assign, names(b, x.avoid))
                            .Union()};
            } else if constexpr (std::is_same_v<T, TaskQuery>) {
                return {gen::Message::TaskQuery,
                        gen::CreateTaskQuery(b, x.request, str(b, x.id), x.cancel, clamp_ms(x.wait))
                            .Union()};
            } else if constexpr (std::is_same_v<T, TaskCopy>) {
                return {gen::Message::TaskCopy,
                        gen::CreateTaskCopy(b, x.request, task_status(b, x.task), x.drop).Union()};
            } else {
                const auto status = x.task ? task_status(b, *x.task) : 0;
                return {gen::Message::TaskReply,
                        gen::CreateTaskReply(b, x.request, x.status, str(b, x.code),
                                             str(b, x.message), x.load_milli, x.capacity, status,
                                             x.replicas, str(b, x.assignee))
                            .Union()};
            }
        },
        m);
}

}  // namespace

std::vector<uint8_t> encode(std::string_view cluster, const Name& sender, const TaskMessage& m) {
    fb::FlatBufferBuilder b(256);
    const auto [type, value] = task_message(b, m);
    b.Finish(gen::CreateFrame(b, kProtocolVersion, str(b, cluster), str(b, sender), type, value));
    return finish(b);
}

std::vector<uint8_t> encode(std::string_view cluster, const Name& sender, const KeyringMessage& m) {
    fb::FlatBufferBuilder b(256);
    const auto [type, value] = std::visit(
        [&](const auto& x) -> std::pair<gen::Message, fb::Offset<void>> {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, KeyringOp>) {
                const size_t n = x.kind == KeyringOp::Kind::list ? 0 : x.key.size();
                const auto key = b.CreateVector(x.key.data(), n);
                return {gen::Message::KeyringOp,
                        gen::CreateKeyringOp(b, x.request, static_cast<uint8_t>(x.kind), key,
                                             x.issued_ms, x.nonce)
                            .Union()};
            } else {
                std::vector<uint8_t> keys;
                for (const KeyBytes& k : x.keys)
                    keys.insert(keys.end(), k.begin(), k.end());
                return {gen::Message::KeyringReply,
                        gen::CreateKeyringReply(b, x.request, str(b, x.code), str(b, x.message),
                                                b.CreateVector(keys), x.primary)
                            .Union()};
            }
        },
        m);
    b.Finish(gen::CreateFrame(b, kProtocolVersion, str(b, cluster), str(b, sender), type, value));
    return finish(b);
}

// ---------------------------------------------------------------------------------------------
// Decoding

namespace {

DecodeFailure bad(std::string detail) {
    return DecodeFailure{DecodeError::bad_field, std::move(detail)};
}

// Reads a string field, enforcing its length limit and, where required, that it is present.
// Throws nothing: a failure is recorded in `err` and the first one wins.
class Reader {
  public:
    explicit Reader(const Limits& l) : l_(l) {}

    // An identifier (a name, address, tag, key, id, type): bounded, valid UTF-8 and free of
    // control characters. A view into the verified buffer; valid while the buffer is.
    std::string_view text(const fb::String* s, uint32_t max, std::string_view field,
                          bool required) {
        const std::string_view v = blob(s, max, field, required);
        if (const TextProblem p = check_text(v); p != TextProblem::none) {
            if (!err_)
                err_ = DecodeFailure{DecodeError::bad_encoding,
                                     fmt::format("{} {}", field, describe(p))};
            return {};
        }
        return v;
    }
    // Any bytes, bounded: JSON text and messages, which are shown only through encoders that
    // replace what is not UTF-8.
    std::string_view blob(const fb::String* s, uint32_t max, std::string_view field,
                          bool required) {
        if (failed()) return {};
        if (s == nullptr || s->size() == 0) {
            if (required) fail(fmt::format("{} is missing", field));
            return {};
        }
        if (s->size() > max) {
            fail(fmt::format("{} is {} bytes, over the limit of {}", field, s->size(), max));
            return {};
        }
        return s->string_view();
    }
    Name name(const fb::String* s, std::string_view field) {
        return Name(text(s, l_.name_bytes_max, field, true));
    }
    Name addr_text(const fb::String* s, std::string_view field, bool required) {
        return Name(text(s, l_.addr_bytes_max, field, required));
    }
    Address addr(const fb::String* s, std::string_view field, bool required) {
        return Address{addr_text(s, field, required)};
    }

    Tags tags(const fb::Vector<fb::Offset<gen::Tag>>* v) {
        Tags out;
        if (failed() || v == nullptr) return out;
        if (v->size() > l_.tags_max) {
            fail(fmt::format("{} tags, over the limit of {}", v->size(), l_.tags_max));
            return out;
        }
        size_t bytes = 0;
        out.reserve(v->size());
        for (const gen::Tag* t : *v) {
            std::string k(text(t->key(), l_.tag_bytes_max, "tag key", true));
            std::string val(text(t->value(), l_.tag_bytes_max, "tag value", false));
            bytes += k.size() + val.size();
            out.emplace_back(std::move(k), std::move(val));
        }
        if (bytes > l_.tag_bytes_max)
            fail(fmt::format("tags total {} bytes, over {}", bytes, l_.tag_bytes_max));
        std::sort(out.begin(), out.end());
        if (std::adjacent_find(out.begin(), out.end(), [](const auto& a, const auto& b) {
                return a.first == b.first;
            }) != out.end()) {
            fail("duplicate tag key");
        }
        return out;
    }

    void fail(std::string detail) {
        if (!err_) err_ = bad(std::move(detail));
    }
    bool failed() const { return err_.has_value(); }
    DecodeFailure failure() const { return *err_; }

  private:
    const Limits& l_;
    std::optional<DecodeFailure> err_;
};

std::optional<DecodeFailure> check_header(uint8_t version, const fb::String* cluster,
                                          const Limits& l) {
    if (version < kMinVersion || version > kProtocolVersion) {
        return DecodeFailure{DecodeError::wrong_version,
                             fmt::format("protocol version {}, we speak {} to {}", version,
                                         kMinVersion, kProtocolVersion)};
    }
    if (cluster == nullptr || cluster->string_view() != l.cluster) {
        return DecodeFailure{
            DecodeError::wrong_cluster,
            fmt::format("cluster '{}', we are '{}'",
                        cluster == nullptr ? std::string_view{} : cluster->string_view(),
                        l.cluster)};
    }
    return std::nullopt;
}

// The 64-bit field when the sender set it, else the 32-bit one (a reader of either age agrees).
Incarnation incarnation(uint32_t low, uint64_t full) {
    return Incarnation{full != 0 ? full : low};
}

std::optional<Update> read_update(Reader& r, gen::Update type, const void* value) {
    switch (type) {
        case gen::Update::Alive: {
            const auto* a = static_cast<const gen::Alive*>(value);
            AliveUpdate u{r.name(a->name(), "alive.name"),
                          r.addr(a->addr(), "alive.addr", true),
                          r.addr_text(a->http(), "alive.http", false),
                          incarnation(a->incarnation(), a->incarnation64()),
                          r.tags(a->tags()),
                          a->protocol()};
            return u;
        }
        case gen::Update::Suspect: {
            const auto* s = static_cast<const gen::Suspect*>(value);
            return SuspectUpdate{r.name(s->name(), "suspect.name"),
                                 incarnation(s->incarnation(), s->incarnation64()),
                                 r.name(s->from(), "suspect.from")};
        }
        case gen::Update::Dead: {
            const auto* d = static_cast<const gen::Dead*>(value);
            return DeadUpdate{r.name(d->name(), "dead.name"),
                              incarnation(d->incarnation(), d->incarnation64()),
                              r.name(d->from(), "dead.from"), d->left(), d->left() && d->prune()};
        }
        case gen::Update::NONE:
            break;
    }
    // An update type from a newer protocol: skip it rather than reject the whole packet.
    return std::nullopt;
}

}  // namespace

Decoded<Packet> decode_packet(std::span<const uint8_t> bytes, const Limits& l) {
    if (bytes.size() > l.packet_bytes_max) {
        return DecodeFailure{DecodeError::too_large, fmt::format("{} bytes, over the limit of {}",
                                                                 bytes.size(), l.packet_bytes_max)};
    }
    fb::Verifier v(bytes.data(), bytes.size(), /*max_depth=*/8, /*max_tables=*/4096);
    if (!gen::VerifyPacketBuffer(v))
        return DecodeFailure{DecodeError::malformed, "failed verification"};
    const auto* p = gen::GetPacket(bytes.data());
    if (auto e = check_header(p->version(), p->cluster(), l)) return *e;

    Reader r(l);
    Packet out;
    out.version = p->version();
    out.cluster = l.cluster;
    out.sender = r.name(p->sender(), "sender");
    out.sender_addr = r.addr(p->sender_addr(), "sender_addr", true);
    out.sender_load_milli = p->sender_load_milli();
    out.sender_ring_checksum = p->sender_ring_checksum();
    // The Verifier accepts a union whose type is set and whose value is absent; every
    // body_as_X() below would then return null.
    if (p->body_type() != gen::Body::NONE && p->body() == nullptr) {
        return DecodeFailure{DecodeError::malformed, "body type set, body missing"};
    }
    switch (p->body_type()) {
        case gen::Body::Ping: {
            const auto* x = p->body_as_Ping();
            out.body = Ping{x->seq(), r.name(x->target(), "ping.target")};
            break;
        }
        case gen::Body::PingReq: {
            const auto* x = p->body_as_PingReq();
            out.body = PingReq{x->seq(), r.name(x->target(), "ping_req.target"),
                               r.addr(x->target_addr(), "ping_req.target_addr", true)};
            break;
        }
        case gen::Body::Ack:
            out.body = Ack{p->body_as_Ack()->seq()};
            break;
        case gen::Body::Nack:
            out.body = Nack{p->body_as_Nack()->seq()};
            break;
        case gen::Body::NONE:
            break;
        default:
            r.fail("unknown body type");
            break;
    }
    const auto* types = p->updates_type();
    const auto* values = p->updates();
    if ((types == nullptr) != (values == nullptr) ||
        (types != nullptr && types->size() != values->size())) {
        r.fail("update types and values differ in length");
    } else if (types != nullptr) {
        if (types->size() > l.updates_max) {
            r.fail(fmt::format("{} updates, over the limit of {}", types->size(), l.updates_max));
        } else {
            out.updates.reserve(types->size());
            for (fb::uoffset_t i = 0; i < types->size() && !r.failed(); ++i) {
                if (types->Get(i) != gen::Update::NONE && values->Get(i) == nullptr) {
                    r.fail("update type set, update missing");
                } else if (auto u = read_update(r, types->Get(i), values->Get(i))) {
                    out.updates.push_back(std::move(*u));
                }
            }
        }
    }
    if (r.failed()) return r.failure();
    return out;
}

namespace {

void read_push_pull(Reader& r, const gen::PushPull& pp, const Limits& l, PushPull& out) {
    out.join = pp.join();
    const auto* ms = pp.members();
    if (ms == nullptr) return;
    if (ms->size() > l.members_max) {
        r.fail(fmt::format("{} members, over the limit of {}", ms->size(), l.members_max));
        return;
    }
    out.members.reserve(ms->size());
    for (const gen::MemberSnapshot* m : *ms) {
        const auto state = static_cast<uint8_t>(m->state());
        if (state > static_cast<uint8_t>(chorus::MemberState::left)) {
            r.fail(fmt::format("member state {} is unknown", state));
            return;
        }
        const auto s = static_cast<chorus::MemberState>(state);
        out.members.push_back(MemberSnapshot{
            r.name(m->name(), "member.name"),
            // A dead member's address may be unknown (a tombstone); a live one needs it.
            r.addr(m->addr(), "member.addr", !is_gone(s)),
            r.addr_text(m->http(), "member.http", false),
            incarnation(m->incarnation(), m->incarnation64()), s, r.tags(m->tags()),
            m->load_milli(), m->protocol()});
        if (r.failed()) return;
    }
}

uint32_t bound(size_t n) {
    return static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
}

std::optional<Time> from_epoch_ms(uint64_t ms) {
    if (ms == 0) return std::nullopt;
    return Time{} + milliseconds(static_cast<int64_t>(std::min<uint64_t>(ms, INT64_MAX / 1000)));
}

TaskSpec read_spec(Reader& r, const gen::TaskSpec* s, const Limits& l) {
    TaskSpec out;
    if (s == nullptr) {
        r.fail("task is missing");
        return out;
    }
    out.id = r.text(s->id(), bound(l.task_id_bytes_max), "task.id", true);
    out.key = r.text(s->key(), bound(l.task_key_bytes_max), "task.key", true);
    out.type = r.text(s->type(), bound(l.task_type_bytes_max), "task.type", true);
    out.payload = r.blob(s->payload(), bound(l.task_payload_bytes_max), "task.payload", false);
    if (out.payload.empty()) out.payload = "null";
    out.timeout = milliseconds(s->timeout_ms());
    out.where = r.tags(s->where());
    if (s->placement() > static_cast<uint8_t>(TaskPlacement::coordinator)) {
        r.fail(fmt::format("task placement {} is unknown", s->placement()));
    }
    out.placement = static_cast<TaskPlacement>(s->placement());
    out.singleton = s->singleton();
    return out;
}

Task read_status(Reader& r, const gen::TaskStatus& s, const Limits& l) {
    Task t;
    t.spec = read_spec(r, s.spec(), l);
    const auto state = static_cast<uint8_t>(s.state());
    if (state > static_cast<uint8_t>(TaskState::lost)) {
        r.fail(fmt::format("task state {} is unknown", state));
    }
    t.state = static_cast<TaskState>(state);
    t.owner = Name(r.text(s.owner(), l.name_bytes_max, "task.owner", false));
    t.result = r.blob(s.result(), bound(l.task_result_bytes_max), "task.result", false);
    t.error = r.blob(s.error(), bound(l.task_text_bytes_max), "task.error", false);
    if (s.has_exit_code()) t.exit_code = s.exit_code();
    t.created = from_epoch_ms(s.created_ms()).value_or(Time{});
    t.started = from_epoch_ms(s.started_ms());
    t.finished = from_epoch_ms(s.finished_ms());
    t.attempts = s.attempts();
    return t;
}

// Keys laid end to end, 32 bytes each, at most `max` of them.
std::vector<KeyBytes> read_keys(Reader& r, const fb::Vector<uint8_t>* bytes, size_t max,
                                std::string_view what) {
    std::vector<KeyBytes> keys;
    const size_t n = bytes == nullptr ? 0 : bytes->size();
    if (n % sizeof(KeyBytes) != 0 || n / sizeof(KeyBytes) > max) {
        r.fail(fmt::format("{} with {} bytes of keys", what, n));
        return keys;
    }
    keys.resize(n / sizeof(KeyBytes));
    for (size_t i = 0; i < keys.size(); ++i)
        std::copy_n(bytes->data() + i * sizeof(KeyBytes), sizeof(KeyBytes), keys[i].begin());
    return keys;
}

}  // namespace

Decoded<Frame> decode_frame(std::span<const uint8_t> bytes, const Limits& l) {
    if (bytes.size() > l.frame_bytes_max) {
        return DecodeFailure{DecodeError::too_large, fmt::format("{} bytes, over the limit of {}",
                                                                 bytes.size(), l.frame_bytes_max)};
    }
    // Each member is a handful of tables; allow that many and no more.
    const auto max_tables =
        static_cast<fb::uoffset_t>(64 + 8 * (l.members_max + 1) * (l.tags_max + 2));
    fb::Verifier v(bytes.data(), bytes.size(), /*max_depth=*/8, max_tables);
    if (!v.VerifyBuffer<gen::Frame>(nullptr)) {
        return DecodeFailure{DecodeError::malformed, "failed verification"};
    }
    const auto* f = fb::GetRoot<gen::Frame>(bytes.data());
    if (auto e = check_header(f->version(), f->cluster(), l)) return *e;

    Reader r(l);
    Frame out;
    out.sender = r.name(f->sender(), "sender");
    if (f->message_type() != gen::Message::NONE && f->message() == nullptr) {
        return DecodeFailure{DecodeError::malformed, "message type set, message missing"};
    }
    switch (f->message_type()) {
        case gen::Message::PushPull: {
            auto& pp = out.message.emplace<PushPull>();
            pp.version = f->version();
            pp.cluster = l.cluster;
            pp.sender = out.sender;
            read_push_pull(r, *f->message_as_PushPull(), l, pp);
            break;
        }
        case gen::Message::TaskSubmit: {
            const auto* m = f->message_as_TaskSubmit();
            auto& x = out.message.emplace<TaskSubmit>();
            x.request = m->request();
            x.spec = read_spec(r, m->task(), l);
            x.budget = milliseconds(m->budget_ms());
            x.assign = m->assign();
            if (const auto* avoid = m->avoid()) {
                if (avoid->size() > kAvoidMax) {
                    r.fail(fmt::format("submit.avoid: {} names, over the limit of {}",
                                       avoid->size(), kAvoidMax));
                } else {
                    for (const auto* n : *avoid)
                        x.avoid.push_back(r.name(n, "submit.avoid"));
                }
            }
            break;
        }
        case gen::Message::TaskQuery: {
            const auto* m = f->message_as_TaskQuery();
            auto& x = out.message.emplace<TaskQuery>();
            x.request = m->request();
            x.id = r.text(m->id(), bound(l.task_id_bytes_max), "query.id", true);
            x.cancel = m->cancel();
            x.wait = milliseconds(m->wait_ms());
            break;
        }
        case gen::Message::TaskReply: {
            const auto* m = f->message_as_TaskReply();
            auto& x = out.message.emplace<TaskReply>();
            x.request = m->request();
            x.status = m->status();
            x.code = r.text(m->code(), 64, "reply.code", false);
            x.message = r.blob(m->message(), bound(l.task_text_bytes_max), "reply.message", false);
            x.load_milli = m->load_milli();
            x.capacity = m->capacity();
            if (const auto* t = m->task()) x.task = read_status(r, *t, l);
            x.replicas = m->replicas();
            x.assignee = Name(r.text(m->assignee(), l.name_bytes_max, "reply.assignee", false));
            break;
        }
        case gen::Message::TaskCopy: {
            const auto* m = f->message_as_TaskCopy();
            auto& x = out.message.emplace<TaskCopy>();
            x.request = m->request();
            x.drop = m->drop();
            if (m->task() == nullptr) {
                r.fail("copy.task is missing");
            } else {
                x.task = read_status(r, *m->task(), l);
            }
            break;
        }
        case gen::Message::KeyringOp: {
            const auto* m = f->message_as_KeyringOp();
            auto& x = out.message.emplace<KeyringOp>();
            x.request = m->request();
            if (m->op() > static_cast<uint8_t>(KeyringOp::Kind::remove)) {
                r.fail(fmt::format("keyring op {} is unknown", m->op()));
                break;
            }
            x.kind = static_cast<KeyringOp::Kind>(m->op());
            const auto keys = read_keys(r, m->key(), 1, "keyring op");
            if (keys.size() != (x.kind == KeyringOp::Kind::list ? 0u : 1u)) {
                r.fail(x.kind == KeyringOp::Kind::list ? "a keyring list with a key"
                                                       : "a keyring op without its key");
                break;
            }
            if (!keys.empty()) x.key = keys[0];
            x.issued_ms = m->issued_ms();
            x.nonce = m->nonce();
            break;
        }
        case gen::Message::KeyringReply: {
            const auto* m = f->message_as_KeyringReply();
            auto& x = out.message.emplace<KeyringReply>();
            x.request = m->request();
            x.code = r.text(m->code(), 64, "keyring.code", false);
            x.message =
                r.blob(m->message(), bound(l.task_text_bytes_max), "keyring.message", false);
            x.keys = read_keys(r, m->keys(), kKeyringKeysMax, "keyring reply");
            x.primary = m->primary();
            if (!x.keys.empty() && x.primary >= x.keys.size()) {
                r.fail(
                    fmt::format("keyring reply's primary {} of {} keys", x.primary, x.keys.size()));
            }
            break;
        }
        default:
            return bad("frame carries no message we know");
    }
    if (r.failed()) return r.failure();
    return out;
}

Decoded<PushPull> decode_push_pull(std::span<const uint8_t> bytes, const Limits& l) {
    auto f = decode_frame(bytes, l);
    if (!f) return f.error();
    auto* pp = std::get_if<PushPull>(&f->message);
    if (pp == nullptr) return bad("frame is not a push-pull");
    return std::move(*pp);
}

}  // namespace chorus::wire
