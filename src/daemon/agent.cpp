#include "daemon/agent.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <fmt/format.h>

#include "daemon/keyring.hpp"
#include "daemon/tags.hpp"
#include "net/srv.hpp"

namespace chorus::daemon {

namespace {

int64_t wall_clock_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// What an operator most often did when nothing from a peer opens.
constexpr const char* kUnsealedHint =
    "; does the sender have another key, or none? every member needs the same --encrypt key";

uint64_t ceil_ms(Duration d) {
    if (d <= Duration::zero()) return 0;
    return static_cast<uint64_t>((d.count() + 999) / 1000);
}

}  // namespace

Agent::Agent(uv_loop_t* loop, AgentOptions options)
    : loop_(loop),
      options_(std::move(options)),
      limits_(wire::limits_for(options_.config, options_.task_limits)),
      start_ns_(uv_hrtime()),
      start_wall_us_(wall_clock_us()),
      retry_delay_(options_.retry_join_min) {}

Agent::~Agent() {
    // The handles close as their members go; nothing of ours is reachable from them after that.
    if (timer_) timer_->data = nullptr;
    *alive_ = nullptr;
}

Time Agent::now() const {
    return Time{} + std::chrono::microseconds(start_wall_us_ + (uv_hrtime() - start_ns_) / 1000);
}

Status Agent::bind() {
    hub_.reset();
    udp_.reset();
    auto udp = net::UdpSocket::open(
        loop_, options_.bind,
        [this](std::span<const uint8_t> b, const net::Endpoint&) { on_datagram(b); });
    if (!udp) return udp.error();
    udp_ = std::move(*udp);
    hub_ = std::make_unique<net::FrameHub>(
        loop_, options_.frame_limits,
        net::FrameHub::Callbacks{
            [this](net::FrameConn& c, std::vector<uint8_t> f) { on_frame(c, std::move(f)); },
            [this](net::FrameConn& c) { on_connected(c); },
            [this](uint64_t id, std::optional<Error> why) { on_closed(id, std::move(why)); }});
    hub_->set_envelope(envelope_.get());
    return hub_->listen(udp_->local());
}

Result<std::unique_ptr<Agent>> Agent::start(uv_loop_t* loop, AgentOptions options) {
    if (auto s = options.config.validate(); !s) return s.error();
    if (options.identity.name.empty()) return Error{"bad_config", "name: must not be empty"};
    std::unique_ptr<Agent> a(new Agent(loop, std::move(options)));
    AgentOptions& o = a->options_;
    if (o.keyring) {
        // The kept keyring wins over the flag: `chorus keys` may have rotated the flag's key
        // out since the agent was configured, and putting a removed key back would let it in
        // again.
        if (!o.keyring_file.empty()) {
            auto kept = load_keyring(o.keyring_file);
            if (!kept) return kept.error();
            if (*kept) {
                const net::Key given = o.keyring->primary();
                o.keyring = std::move(**kept);
                const auto& keys = o.keyring->keys();
                a->notes_.push_back(fmt::format(
                    "using the keyring kept in {} ({} keys){}", o.keyring_file, keys.size(),
                    std::find(keys.begin(), keys.end(), given) == keys.end()
                        ? "; the --encrypt key is not in it (rotated out by chorus keys?) and "
                          "is not used"
                        : ""));
            } else if (auto st = save_keyring(o.keyring_file, *o.keyring); !st) {
                return st.error();
            }
        }
        a->envelope_ = std::make_unique<net::Envelope>(*o.keyring, o.config.cluster, o.envelope);
    }

    // With port 0 the kernel picks the UDP port and streams listen on the same one; another
    // process may hold that TCP port, so an ephemeral bind tries again with a fresh port.
    const int attempts = o.bind.port() == 0 ? 16 : 1;
    Status bound_both = Ok{};
    for (int i = 0; i < attempts; ++i) {
        bound_both = a->bind();
        if (bound_both) break;
    }
    if (!bound_both) return bound_both.error();
    const net::Endpoint bound = a->udp_->local();

    if (o.identity.addr.empty()) {
        const std::string host = bound.str().substr(0, bound.str().rfind(':'));
        if (host == "0.0.0.0" || host == "[::]") {
            // Bound everywhere and told nothing: advertise what memberlist and Serf would.
            const bool ipv6 = host == "[::]";
            const auto pick = net::pick_advertise(net::host_addresses(), ipv6);
            if (!pick) {
                return Error{"bad_config",
                             fmt::format("advertise: none given, and no network interface has "
                                         "an {} address other members could reach (only "
                                         "loopback or link-local); give --advertise IP:PORT",
                                         ipv6 ? "IPv6" : "IPv4")};
            }
            const std::string ip = ipv6 ? "[" + pick->ip + "]" : pick->ip;
            o.identity.addr = Address{fmt::format("{}:{}", ip, bound.port())};
            a->notes_.push_back(fmt::format(
                "advertise: none given; advertising {}, {}'s address (--advertise to choose)",
                o.identity.addr.value.view(), pick->interface));
        } else {
            o.identity.addr = Address{bound.str()};
        }
    }
    if (!o.tags_file.empty()) {
        // Tags `chorus tags` left win over --tag, as the kept keyring wins over --encrypt.
        auto kept = load_tags(o.tags_file);
        if (!kept) return kept.error();
        if (*kept) {
            const Tags own = reserved_tags(o.identity.tags);
            if (auto st = check_tags(**kept, own, o.config); !st) {
                return Error{"bad_tags", fmt::format("{}: {}", o.tags_file, st.error().message)};
            }
            Tags given = operator_tags(o.identity.tags);
            std::sort(given.begin(), given.end());
            if (given != **kept) {
                a->notes_.push_back(fmt::format(
                    "using the tags kept in {} (set by chorus tags) instead of the configured "
                    "ones: {}",
                    o.tags_file, tags_text(**kept)));
            }
            o.identity.tags = std::move(**kept);
            o.identity.tags.insert(o.identity.tags.end(), own.begin(), own.end());
        }
    }
    if (auto st = check_announcement(a->announcement(o.identity.tags), o.config.cluster,
                                     a->envelope_ != nullptr, o.config);
        !st) {
        return st.error();
    }
    for (auto* t : {&a->timer_, &a->retry_, &a->leave_check_}) {
        auto h = net::make_timer(loop, a.get());
        if (!h) return h.error();
        *t = std::move(*h);
    }
    const uint64_t seed = o.rng_seed != 0 ? o.rng_seed : uv_hrtime();
    // Sealing adds kSealOverhead to every datagram: the node builds packets that much smaller,
    // so they still fit; what it takes in keeps the full size (a member not yet sealing, while
    // a cluster moves to encryption, sends packets of the full size).
    Config node_config = o.config;
    if (a->envelope_) {
        if (node_config.packet_bytes_max < 512 + net::kSealOverhead) {
            return Error{"bad_config",
                         fmt::format("packet_bytes_max {} leaves no room for the seal's {} bytes "
                                     "and a 512-byte packet",
                                     node_config.packet_bytes_max, net::kSealOverhead)};
        }
        node_config.packet_bytes_max -= net::kSealOverhead;
    }
    a->started_ = a->now();
    a->node_ = std::make_unique<Node>(node_config, o.identity, seed, a->now());
    a->join();
    a->after_input();
    return a;
}

// ---------------------------------------------------------------------------------------------
// Inputs

void Agent::on_datagram(std::span<const uint8_t> bytes) {
    std::vector<uint8_t> opened;
    if (envelope_) {
        auto o = envelope_->unwrap(bytes);
        if (!o) {
            rejected(
                {wire::DecodeError::unsealed, "a datagram: " + o.error().message + kUnsealedHint});
            return;
        }
        opened = std::move(*o);
        bytes = opened;
    }
    auto p = wire::decode_packet(bytes, limits_);
    if (!p) {
        rejected(p.error());
        return;
    }
    node_->handle_packet(*p, now());
    after_input();
}

void Agent::on_frame(net::FrameConn& conn, std::vector<uint8_t> bytes) {
    const uint64_t id = conn.id();
    auto frame = wire::decode_frame(bytes, limits_);
    if (frame) {
        if (const auto* op = std::get_if<wire::KeyringOp>(&frame->message)) {
            on_keyring_op(conn, frame->sender, *op);
            return;
        }
        if (auto* reply = std::get_if<wire::KeyringReply>(&frame->message)) {
            if (keyring_calls_.contains(id)) {
                keyring_answered(id, &frame->sender, std::move(*reply), "");
                hub_->close(id);
            } else {
                hub_->close(id, Error{"bad_frame", "a keyring reply nobody asked for"});
            }
            return;
        }
    }
    if (frame && !std::holds_alternative<PushPull>(frame->message)) {
        if (channel_ != nullptr) {
            channel_->on_task_frame(conn, std::move(*frame));
        } else {
            hub_->close(id, Error{"bad_frame", "this node takes no task frames"});
        }
        return;
    }
    wire::Decoded<PushPull> pp =
        frame ? wire::Decoded<PushPull>(std::get<PushPull>(std::move(frame->message)))
              : wire::Decoded<PushPull>(frame.error());
    if (!pp) rejected(pp.error());
    if (conn.outbound() && pulls_.contains(id)) {
        // The answer to a push-pull we opened.
        auto it = pulls_.find(id);
        if (it != pulls_.end()) {
            it->second.answered = true;
            if (pp) {
                node_->push_pull_done(it->second.peer, *pp, now());
            } else {
                join_failed(it->second.peer,
                            fmt::format("its answer was refused: {}: {}",
                                        wire::to_string(pp.error().reason), pp.error().detail));
                node_->push_pull_failed(it->second.peer, now());
            }
        }
        hub_->close(id);
    } else if (pp) {
        const PushPull reply = node_->handle_push_pull(*pp, now());
        const auto bytes = wire::encode(reply);
        conn.send(bytes);
        conn.close_after_write();
    } else {
        hub_->close(id, Error{"bad_frame", pp.error().detail});
    }
    after_input();
}

void Agent::rejected(const wire::DecodeFailure& f) {
    stats_.rejected.count(f.reason);
    ++rejects_unreported_;
    const Time t = now();
    if (last_reject_report_ && t - *last_reject_report_ < seconds(1)) return;
    last_reject_report_ = t;
    if (options_.on_rejected) options_.on_rejected(f, rejects_unreported_ - 1);
    rejects_unreported_ = 0;
}

void Agent::on_connected(net::FrameConn& conn) {
    if (auto k = keyring_calls_.find(conn.id()); k != keyring_calls_.end()) {
        conn.send(std::exchange(k->second.frame, {}));
        return;
    }
    auto it = pulls_.find(conn.id());
    if (it == pulls_.end()) {
        if (channel_ != nullptr) channel_->on_connected(conn);
        return;
    }
    conn.send(it->second.frame);
    it->second.frame.clear();
    it->second.frame.shrink_to_fit();
}

void Agent::on_closed(uint64_t id, std::optional<Error> why) {
    // Counted and logged with the datagrams no key opened: an operator sees one figure.
    if (why && why->code == "unsealed") {
        rejected({wire::DecodeError::unsealed, why->message + kUnsealedHint});
    }
    if (keyring_calls_.contains(id)) {
        keyring_answered(id, nullptr, std::nullopt,
                         why ? why->message : "the connection closed without an answer");
        return;
    }
    auto it = pulls_.find(id);
    if (it == pulls_.end()) {
        if (channel_ != nullptr) channel_->on_closed(id);
        return;
    }
    const Outgoing o = std::move(it->second);
    pulls_.erase(it);
    if (!o.answered) {
        // A seed of another cluster, or on another key, drops the push-pull and hangs up.
        join_failed(o.peer, why ? why->message
                                : "it closed the connection without answering (another "
                                  "--cluster, or another --encrypt key?)");
        node_->push_pull_failed(o.peer, now());
        after_input();
    }
}

void Agent::on_timer(uv_timer_t* t) {
    auto* self = static_cast<Agent*>(t->data);
    if (self == nullptr) return;
    self->node_->tick(self->now());
    self->after_input();
}

// ---------------------------------------------------------------------------------------------
// Keyring

std::optional<Error> Agent::keyring_refusal() const {
    // Every keyring op travels sealed, both ways, or not at all: a key must never cross the wire
    // in clear, and an op that may have come in clear could be anyone's.
    if (!envelope_) {
        return Error{"encryption_off",
                     "this member has no key (--encrypt): keyring ops are refused on a cluster in "
                     "clear, where a key would cross the wire in clear"};
    }
    if (!envelope_->options().incoming || !envelope_->seals()) {
        return Error{"encryption_unverified",
                     "this member still sends or takes messages in clear (the "
                     "encrypt_verify_* switches): finish the move to encryption first"};
    }
    return std::nullopt;
}

namespace {
constexpr auto kKeyringOpFreshFor = std::chrono::seconds(30);
constexpr size_t kKeyringSeenMax = 4096;  // ops remembered within kKeyringOpFreshFor
constexpr size_t kKeyringDialsMax = 16;   // members asked at once, of outbound_max

uint64_t wall_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}
}  // namespace

std::optional<Error> Agent::stale_or_replayed(const Name& sender, const wire::KeyringOp& op) {
    const uint64_t now = wall_ms();
    const auto fresh_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(kKeyringOpFreshFor).count());
    while (!keyring_seen_.empty() && keyring_seen_.front().at_ms + 2 * fresh_ms < now)
        keyring_seen_.pop_front();
    // Differences, not sums: issued_ms comes from the wire and may be anything.
    const uint64_t apart = op.issued_ms > now ? op.issued_ms - now : now - op.issued_ms;
    if (apart > fresh_ms) {
        return Error{
            "stale_op",
            fmt::format("issued {} ms {} this member's clock, more than {} s: a "
                        "recorded op, or clocks too far apart",
                        apart, op.issued_ms > now ? "ahead of" : "behind", fresh_ms / 1000)};
    }
    for (const Seen& s : keyring_seen_) {
        if (s.nonce == op.nonce && s.sender == sender) {
            return Error{"replayed_op", "this op was already done here"};
        }
    }
    if (keyring_seen_.size() >= kKeyringSeenMax) {
        return Error{"busy", "too many keyring ops within 60 s; try again later"};
    }
    keyring_seen_.push_back(Seen{sender, op.nonce, now});
    return std::nullopt;
}

void Agent::on_keyring_op(net::FrameConn& conn, const Name& sender, const wire::KeyringOp& op) {
    wire::KeyringReply reply;
    std::optional<Error> refused = keyring_refusal();
    if (!refused) refused = stale_or_replayed(sender, op);
    if (refused) {
        reply.code = refused->code;
        reply.message = refused->message;
    } else {
        reply = apply_keyring_op(envelope_->sealer().keyring(), options_.keyring_file, op);
    }
    reply.request = op.request;
    conn.send(
        wire::encode(options_.config.cluster, node_->self().name, wire::KeyringMessage(reply)));
    conn.close_after_write();
}

void Agent::keyring_everywhere(wire::KeyringOp op, Duration timeout,
                               std::function<void(std::vector<KeyringAnswer>)> done) {
    const bool busy = !keyring_batches_.empty();
    const uint64_t id = next_keyring_batch_++;
    auto owned = std::make_unique<KeyringBatch>();
    KeyringBatch& batch = *owned;
    keyring_batches_.emplace(id, std::move(owned));
    batch.agent = this;
    batch.id = id;
    batch.done = std::move(done);
    op.issued_ms = wall_ms();
    op.nonce = net::random_u64();
    batch.op = op;
    // This member first, directly; then every other member not known to be gone, each over a
    // connection of its own, a few at a time.
    wire::KeyringReply self;
    if (auto refused = keyring_refusal()) {
        self.code = refused->code;
        self.message = refused->message;
    } else if (busy) {
        // One op at a time: each dials up to kKeyringDialsMax members, and two ops crossing
        // (a use and a remove) would leave members in either order.
        self.code = "busy";
        self.message = "another keyring op is under way on this agent: run this one after it";
    } else {
        self = apply_keyring_op(envelope_->sealer().keyring(), options_.keyring_file, op);
    }
    const bool refused_here = !self.code.empty();
    batch.answers.push_back({node_->self().name, std::move(self), ""});
    if (!refused_here) {
        node_->members().for_each([&](const Member& m) {
            if (m.name == node_->self().name || is_gone(m.state)) return;
            batch.answers.push_back(KeyringAnswer{m.name, std::nullopt, ""});
            batch.to_dial.emplace_back(batch.answers.size() - 1, m.addr);
        });
    }
    batch.deadline = net::make_timer(loop_, &batch).value();
    uv_timer_start(
        batch.deadline.get(),
        [](uv_timer_t* t) {
            if (auto* b = static_cast<KeyringBatch*>(t->data)) b->agent->keyring_batch_done(b->id);
        },
        ceil_ms(timeout), 0);
    keyring_dial(id);
}

void Agent::keyring_dial(uint64_t batch) {
    auto b = keyring_batches_.find(batch);
    if (b == keyring_batches_.end()) return;
    KeyringBatch& k = *b->second;
    while (k.open < kKeyringDialsMax && k.next_dial < k.to_dial.size()) {
        const auto& [index, addr] = k.to_dial[k.next_dial++];
        auto to = net::Endpoint::parse(addr.value.view());
        const uint64_t conn = to ? hub_->connect(*to) : 0;
        if (conn == 0 || hub_->find(conn) == nullptr) {
            k.answers[index].error = fmt::format("could not connect to {}", addr.value.str());
            continue;
        }
        wire::KeyringOp op = k.op;
        op.request = net::random_u64();
        keyring_calls_[conn] = KeyringCall{
            batch, index, op.request,
            wire::encode(options_.config.cluster, node_->self().name, wire::KeyringMessage(op))};
        ++k.open;
    }
    if (k.open == 0 && k.next_dial == k.to_dial.size()) keyring_batch_done(batch);
}

void Agent::keyring_answered(uint64_t conn, const Name* sender,
                             std::optional<wire::KeyringReply> reply, std::string error) {
    auto it = keyring_calls_.find(conn);
    if (it == keyring_calls_.end()) return;
    const KeyringCall call = std::move(it->second);
    keyring_calls_.erase(it);
    auto b = keyring_batches_.find(call.batch);
    if (b == keyring_batches_.end()) return;
    KeyringBatch& k = *b->second;
    KeyringAnswer& a = k.answers[call.index];
    if (reply && (reply->request != call.request || sender == nullptr || *sender != a.member)) {
        // Not the answer to what was asked on this connection (an old reply played back).
        reply.reset();
        error = "an answer that does not match the op sent";
    }
    a.reply = std::move(reply);
    a.error = std::move(error);
    --k.open;
    keyring_dial(call.batch);
}

void Agent::keyring_batch_done(uint64_t batch) {
    auto b = keyring_batches_.find(batch);
    if (b == keyring_batches_.end()) return;
    std::unique_ptr<KeyringBatch> done = std::move(b->second);
    keyring_batches_.erase(b);
    // Calls still open are abandoned, and members never dialled are named: neither answered in
    // time.
    for (auto it = keyring_calls_.begin(); it != keyring_calls_.end();) {
        if (it->second.batch != batch) {
            ++it;
            continue;
        }
        done->answers[it->second.index].error = "no answer in time";
        const uint64_t conn = it->first;
        it = keyring_calls_.erase(it);
        hub_->close(conn);
    }
    for (size_t i = done->next_dial; i < done->to_dial.size(); ++i)
        done->answers[done->to_dial[i].first].error = "no answer in time";
    done->done(std::move(done->answers));
}

// ---------------------------------------------------------------------------------------------
// Join and leave

void Agent::join() {
    if (options_.seeds.empty() || node_->joined()) return;
    ++join_attempts_;
    ++stats_.join_attempts;
    trouble_now_.clear();
    resolve_seeds();
    // The timer ends this attempt: it retries, or reports the last attempt failed.
    uv_timer_start(retry_.get(), on_retry, ceil_ms(retry_delay_), 0);
}

void Agent::resolve_seeds() {
    ++resolve_round_;
    resolved_.clear();
    resolving_ = 0;
    for (const auto& seed : options_.seeds) {
        auto srv = net::srv_seed_name(seed);
        if (srv && !srv->empty()) {
            ++resolving_;
            resolve_srv(seed, *srv, resolve_round_);
        } else if (auto e = net::Endpoint::parse(seed)) {
            resolved_.push_back(Address{e->str()});
        } else if (auto hp = net::split_host_port(seed)) {
            ++resolving_;
            resolve(hp->host, hp->port, resolve_round_);
        } else {
            ++stats_.resolve_failures;
        }
    }
    if (resolving_ == 0) join_resolved();
}

void Agent::join_failed(const Address& seed, std::string why) {
    if (!node_->joined()) trouble_now_[seed.value.str()] = std::move(why);
}

std::string Agent::join_trouble() const {
    if (node_->joined()) return "";
    std::string out;
    for (const auto& [seed, why] : trouble_) {
        if (!out.empty()) out += "; ";
        out += fmt::format("{}: {}", seed, why);
    }
    return out;
}

namespace {
struct Resolution {
    uv_getaddrinfo_t req;
    std::shared_ptr<Agent*> owner;
    uint32_t round;  // Agent::resolve_round_ when asked: a later round's answers replace it
    Address seed;    // host:port, as given
};
}  // namespace

void Agent::resolve(const std::string& host, uint16_t port, uint32_t round) {
    const Address seed{fmt::format("{}:{}", host, port)};
    auto* r = new Resolution{{}, alive_, round, seed};
    r->req.data = r;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const std::string service = std::to_string(port);
    const int rc = uv_getaddrinfo(
        loop_, &r->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
            std::unique_ptr<Resolution> done(static_cast<Resolution*>(req->data));
            Agent* self = *done->owner;
            if (self != nullptr && done->round == self->resolve_round_) {
                if (status < 0) {
                    ++self->stats_.resolve_failures;
                    self->join_failed(done->seed,
                                      fmt::format("cannot resolve it ({})", uv_strerror(status)));
                }
                for (const addrinfo* ai = res; status == 0 && ai != nullptr; ai = ai->ai_next) {
                    const Address a{net::Endpoint::from(ai->ai_addr).str()};
                    if (std::find(self->resolved_.begin(), self->resolved_.end(), a) ==
                        self->resolved_.end()) {
                        self->resolved_.push_back(a);
                    }
                }
                self->resolved_one();
            }
            uv_freeaddrinfo(res);
        },
        host.c_str(), service.c_str(), &hints);
    if (rc != 0) {
        delete r;
        ++stats_.resolve_failures;
        join_failed(seed, fmt::format("cannot resolve it ({})", uv_strerror(rc)));
        --resolving_;
    }
}

namespace {
struct SrvLookup {
    uv_work_t req;
    std::shared_ptr<Agent*> owner;
    uint32_t round;
    std::string seed;  // "dnssrv+NAME", as given
    std::string name;
    Result<std::vector<net::SrvTarget>> answer = std::vector<net::SrvTarget>{};
};
}  // namespace

void Agent::resolve_srv(const std::string& seed, const std::string& name, uint32_t round) {
    auto* l = new SrvLookup{{}, alive_, round, seed, name};
    l->req.data = l;
    const int rc = uv_queue_work(
        loop_, &l->req,
        [](uv_work_t* req) {  // on the thread pool
            auto* lookup = static_cast<SrvLookup*>(req->data);
            lookup->answer = net::query_srv(lookup->name);
        },
        [](uv_work_t* req, int) {
            std::unique_ptr<SrvLookup> done(static_cast<SrvLookup*>(req->data));
            Agent* self = *done->owner;
            if (self == nullptr || done->round != self->resolve_round_) return;
            if (!done->answer) {
                ++self->stats_.resolve_failures;
                self->join_failed(Address{done->seed},
                                  fmt::format("cannot look up its SRV records ({})",
                                              done->answer.error().message));
            } else {
                // Each target is looked up in this same round, before this lookup counts as over.
                for (const net::SrvTarget& t : *done->answer) {
                    ++self->resolving_;
                    self->resolve(t.host, t.port, done->round);
                }
            }
            self->resolved_one();
        });
    if (rc != 0) {
        delete l;
        ++stats_.resolve_failures;
        join_failed(Address{seed},
                    fmt::format("cannot look up its SRV records ({})", uv_strerror(rc)));
        --resolving_;
    }
}

void Agent::resolved_one() {
    if (--resolving_ == 0) join_resolved();
}

void Agent::join_resolved() {
    if (resolved_.empty()) return;
    if (node_->joined()) {  // a refresh: the node calls a seed again when it is not a member
        node_->set_seeds(resolved_);
        return;
    }
    node_->join(resolved_, now());
    after_input();
}

void Agent::on_retry(uv_timer_t* t) {
    auto* self = static_cast<Agent*>(t->data);
    if (self == nullptr) return;
    if (self->node_->joined()) {
        // Joined: seed names may come to mean other hosts, so they are resolved again now and
        // then, for the node's calls to seeds that are not members (Node::join).
        const auto named = [](const std::string& seed) { return !net::Endpoint::parse(seed); };
        if (std::any_of(self->options_.seeds.begin(), self->options_.seeds.end(), named)) {
            self->resolve_seeds();
            uv_timer_start(self->retry_.get(), on_retry, ceil_ms(kSeedRefresh), 0);
        }
        return;
    }
    // The attempt is over: a seed that has not failed outright has not answered either.
    const Address& me = self->node_->self().addr;
    bool others = !self->trouble_now_.empty();
    for (const Address& seed : self->resolved_) {
        if (seed == me) continue;
        others = true;
        self->trouble_now_.try_emplace(
            seed.value.str(), fmt::format("no answer within {} ms", ceil_ms(self->retry_delay_)));
    }
    self->trouble_ = std::move(self->trouble_now_);
    self->trouble_now_.clear();
    self->retry_delay_ = std::min(self->retry_delay_ * 2, self->options_.retry_join_max);
    // Every seed is this agent itself: it is the cluster's first member, and the others join
    // it. Nothing failed; it keeps looking, since a seed's name may come to mean another host.
    const uint32_t max = self->options_.retry_join_attempts;
    const bool last = max != 0 && self->join_attempts_ >= max;
    if (others && self->options_.on_join_failed) {
        self->options_.on_join_failed(self->join_attempts_, self->join_trouble(), last);
    }
    if (last && others) return;
    self->join();
    self->after_input();
}

void Agent::leave(Duration timeout, std::function<void()> done) {
    // A second request (a signal during an API leave, say) waits for the leave under way.
    if (!node_->leaving()) {
        node_->leave(now());
        after_input();
        leave_deadline_ = now() + timeout;
    }
    leave_done_.push_back(std::move(done));
    uv_timer_start(leave_check_.get(), on_leave_check, 0, 20);
}

void Agent::on_leave_check(uv_timer_t* t) {
    auto* self = static_cast<Agent*>(t->data);
    if (self == nullptr) return;
    if (!self->node_->leave_spread() && self->now() < self->leave_deadline_) return;
    uv_timer_stop(t);
    for (auto& done : std::exchange(self->leave_done_, {}))
        done();
}

// ---------------------------------------------------------------------------------------------
// Outputs

AliveUpdate Agent::announcement(const Tags& tags) const {
    // The highest incarnation encodes the longest (variable-length fields aside, all fixed).
    return AliveUpdate{options_.identity.name,
                       options_.identity.addr,
                       options_.identity.http,
                       Incarnation{UINT64_MAX},
                       tags,
                       kProtocolVersion};
}

Status Agent::set_operator_tags(Tags tags) {
    std::sort(tags.begin(), tags.end());
    const Tags own = reserved_tags(node_->self().tags());
    if (auto st = check_tags(tags, own, options_.config); !st) return st;
    Tags all = tags;
    all.insert(all.end(), own.begin(), own.end());
    if (auto st = check_announcement(announcement(all), options_.config.cluster,
                                     envelope_ != nullptr, options_.config);
        !st) {
        return st;
    }
    if (!options_.tags_file.empty()) {
        if (auto st = save_tags(options_.tags_file, tags); !st) return st;
    }
    node_->set_tags(std::move(all), now());
    after_input();
    return Ok{};
}

Result<MemberState> Agent::force_leave(std::string_view name, bool prune) {
    if (name.empty() || name.size() > options_.config.name_bytes_max) {
        return Error{"unknown_member", "no member has such a name"};
    }
    auto r = node_->force_leave(Name(name), prune, now());
    after_input();
    return r;
}

void Agent::set_reserved_tag(std::string_view key, std::optional<std::string> value) {
    Tags all = node_->self().tags();
    std::erase_if(all, [&](const Tag& t) { return t.first == key; });
    if (value) all.emplace_back(std::string(key), std::move(*value));
    node_->set_tags(std::move(all), now());
    after_input();
}

void Agent::after_input() {
    // Failing a push-pull at once (an unroutable address) can produce more output.
    for (int i = 0; i < 8 && !node_->outbox().empty(); ++i)
        drain();
    arm();
}

void Agent::drain() {
    Outbox out = std::move(node_->outbox());
    node_->outbox().clear();
    if (options_.on_event) {
        for (const MemberEvent& e : out.events)
            options_.on_event(e);
    }
    if (options_.on_name_conflict) {
        for (const NameConflict& c : out.conflicts)
            options_.on_name_conflict(c,
                                      c.live && c.newcomer && now() - started_ < kNewcomerWindow);
    }
    for (const OutPacket& p : out.packets) {
        auto to = net::Endpoint::parse(p.to.value.view());
        if (!to) {
            ++stats_.unroutable;
            continue;
        }
        if (envelope_ && envelope_->seals()) {
            udp_->send(*to, envelope_->seal(wire::encode(p.packet)));
        } else {
            udp_->send(*to, wire::encode(p.packet));
        }
    }
    for (OutPushPull& pp : out.push_pulls) {
        auto to = net::Endpoint::parse(pp.to.value.view());
        if (!to) ++stats_.unroutable;
        // 0: unroutable, or outbound_max open already (the hub counts that).
        const uint64_t id = to ? hub_->connect(*to) : 0;
        if (id == 0 || hub_->find(id) == nullptr) {
            // Unroutable, outbound_max open, or connect() failed at once and closed it before
            // we could record it.
            join_failed(pp.to, "could not open a connection to it");
            node_->push_pull_failed(pp.to, now());
            continue;
        }
        pulls_[id] = Outgoing{pp.to, wire::encode(pp.state), false};
    }
}

void Agent::arm() {
    uv_timer_start(timer_.get(), on_timer, ceil_ms(node_->next_deadline() - now()), 0);
}

}  // namespace chorus::daemon
