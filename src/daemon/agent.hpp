// The agent: one core Node driven by libuv (ARCHITECTURE.md, "Layers"). Datagrams and push-pull
// frames come in through src/net, pass the wire codec's checks and go to the node; after every
// input the agent drains the node's outbox back to the sockets and re-arms one timer at the node's
// next deadline. Join retries with backoff until a seed answers. Everything runs on the loop's
// thread; nothing here blocks.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/node.hpp"
#include "net/endpoint.hpp"
#include "net/frames.hpp"
#include "net/handle.hpp"
#include "net/udp.hpp"
#include "wire/codec.hpp"

namespace chorus::daemon {

// Whoever else speaks over the agent's streams (task forwarding): it gets the task frames, and
// hears of the connections it dialled through hub().
class FrameChannel {
  public:
    virtual ~FrameChannel() = default;
    virtual void on_task_frame(net::FrameConn& conn, wire::Frame frame) = 0;
    virtual void on_connected(net::FrameConn& conn) = 0;
    virtual void on_closed(uint64_t conn) = 0;
};

struct AgentOptions {
    Config config = Config::lan();
    Identity identity;  // addr: the advertised gossip address; empty means the bound one
    net::Endpoint bind = net::Endpoint::parse("0.0.0.0:7900").value();
    // ip:port, [ipv6]:port or host:port; names are resolved again on every join attempt, so a
    // seed whose address changed is found at its new one.
    std::vector<std::string> seeds;
    // Join retries: first after retry_join_min, doubling up to retry_join_max, until a seed
    // answers. 0 attempts means retry forever.
    Duration retry_join_min = seconds(1);
    Duration retry_join_max = seconds(30);
    uint32_t retry_join_attempts = 0;
    uint64_t rng_seed = 0;  // 0: from the clock
    net::FrameLimits frame_limits{};
    // Set: every datagram and frame is sealed with the keyring's primary key and opened with
    // any of its keys (net/seal.hpp); `envelope` says whether clear ones are still sent or
    // taken, for a cluster moving to encryption. Unset: everything goes in clear.
    std::optional<net::Keyring> keyring;
    net::EnvelopeOptions envelope{};
    // Where the keyring is kept (DATA_DIR/keyring.json; empty: not kept). A keyring found there
    // at start is the one used, as `chorus keys` left it; `keyring`'s key is not added to it (it
    // may have been rotated out), and the agent's notes() say so.
    std::string keyring_file;
    // Where the operator's tags are kept once `chorus tags` changes them (DATA_DIR/tags.json;
    // empty: not kept). Tags found there at start are used instead of identity's (daemon/tags.hpp).
    std::string tags_file;
    // Bounds on task frames' fields (the task service's limits).
    TaskLimits task_limits{};
    // Called for every membership change this node sees (logs now; the API's streams later).
    std::function<void(const MemberEvent&)> on_event;
    // Called for a rejected datagram or frame at most once per second (a flood of garbage must
    // not become a flood of log lines); `suppressed` counts the rejections since the last call.
    std::function<void(const wire::DecodeFailure&, uint64_t suppressed)> on_rejected;
    // A join attempt ended without any seed answering: why, seed by seed (join_trouble()).
    // `last`: it was the last of retry_join_attempts, and the agent gives up (the process
    // exits non-zero, as Serf's does).
    std::function<void(uint32_t attempt, const std::string& why, bool last)> on_join_failed;
    // Another process announced itself under this member's name (core/node.hpp, NameConflict).
    // `stop`: it is live and this member is the newcomer, started less than kNewcomerWindow ago:
    // the newer of two live processes with one name stops, and the older keeps the name.
    // Otherwise this member keeps it.
    std::function<void(const NameConflict& c, bool stop)> on_name_conflict;
};

// How long after its start an agent gives way to a live process with its name. A duplicate
// shows itself within seconds of the join; beyond this, forged claims (two datagrams, in a
// cluster without a key) could otherwise stop a member, so a member keeps its name and warns.
inline constexpr Duration kNewcomerWindow = seconds(60);

struct AgentStats {
    wire::DecodeStats rejected;
    uint64_t unroutable = 0;  // outbox addresses that are not ip:port
    uint64_t join_attempts = 0;
    uint64_t resolve_failures = 0;  // seed names that did not resolve
};

class Agent {
  public:
    // Binds UDP and TCP on options.bind (an ephemeral port 0 is resolved first, so both share
    // it) and starts the node. Seeds are contacted at once.
    static Result<std::unique_ptr<Agent>> start(uv_loop_t* loop, AgentOptions options);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // A keyring op on every member not known to be gone, this one included (`chorus keys`), at
    // most kKeyringDialsMax at once. Each member's answer, or why there is none, goes to `done`
    // once all have answered or `timeout` passed. Refused here (no key, or a switch still
    // letting messages go or come in clear, or another op under way: `busy`): nobody else is
    // asked.
    struct KeyringAnswer {
        Name member;
        std::optional<wire::KeyringReply> reply;  // none: `error` says why
        std::string error;
    };
    void keyring_everywhere(wire::KeyringOp op, Duration timeout,
                            std::function<void(std::vector<KeyringAnswer>)> done);

    // Announces the leave; calls `done` once it has spread or `timeout` passed. Called again
    // while leaving, it only adds `done` (the first call's timeout stands).
    void leave(Duration timeout, std::function<void()> done);

    // Task frames and the connections the channel dials go to `channel` (null: none).
    void attach(FrameChannel* channel) { channel_ = channel; }
    net::FrameHub& hub() { return *hub_; }
    // Replaces the operator's tags (the agent's own under kReservedTagPrefix stay), keeps them
    // in tags_file and announces them. Errors: `bad_tag` (nothing changed), `tags_unsaved` (the
    // file could not be written: nothing changed).
    Status set_operator_tags(Tags tags);
    // `chorus force-leave`: Node::force_leave, gossiped at once.
    Result<MemberState> force_leave(std::string_view name, bool prune);
    // Sets (a value) or removes (nullopt) one of the agent's own tags, such as kDrainTag.
    void set_reserved_tag(std::string_view key, std::optional<std::string> value);
    const std::string& tags_file() const { return options_.tags_file; }
    // This node's task load; members hear of a change at the next gossip tick.
    void set_load(uint32_t load_milli) { node_->set_load(load_milli); }

    const Node& node() const { return *node_; }
    // The task layer's: it reads membership and sets the load (gossiped at the next tick).
    Node& node() { return *node_; }
    // Why the join has not succeeded yet, seed by seed ("127.0.0.1:7900: connection refused;
    // db.example:7900: cannot resolve it (...)"); empty once joined or while the first attempt
    // is under way.
    std::string join_trouble() const;
    uint32_t join_attempts() const { return join_attempts_; }
    // Joined (or started alone) and not leaving: what /v1/health reports.
    bool ready() const { return (options_.seeds.empty() || node_->joined()) && !node_->leaving(); }
    const AgentStats& stats() const { return stats_; }
    const net::UdpSocket& udp() const { return *udp_; }
    const net::FrameHub& streams() const { return *hub_; }
    const net::Envelope* envelope() const { return envelope_.get(); }
    // What start chose that the operator should hear of: a keyring kept in the data dir used
    // instead of the --encrypt key alone, an address picked to advertise.
    const std::vector<std::string>& notes() const { return notes_; }
    net::Endpoint bound() const { return udp_->local(); }
    Time now() const;  // monotonic, anchored to the wall clock at start

  private:
    explicit Agent(uv_loop_t* loop, AgentOptions options);
    Status bind();  // UDP on options_.bind, then TCP on the port UDP got
    // This member's announcement with `tags`, as long as it can be (for the packet-size check).
    AliveUpdate announcement(const Tags& tags) const;
    void on_datagram(std::span<const uint8_t> bytes);
    void on_frame(net::FrameConn& conn, std::vector<uint8_t> frame);
    void on_connected(net::FrameConn& conn);
    void on_closed(uint64_t id, std::optional<Error> why);
    void join();
    void resolve(const std::string& host, uint16_t port, uint32_t round);
    // A "dnssrv+NAME" seed: NAME's SRV records, then each target resolved as a host:port seed.
    void resolve_srv(const std::string& seed, const std::string& name, uint32_t round);
    void resolved_one();   // one of this round's lookups is over
    void resolve_seeds();  // a round: addresses into resolved_, names looked up
    void join_resolved();  // all of this round's names are resolved (or failed)
    void join_failed(const Address& seed, std::string why);  // a seed did not answer
    void after_input();                                      // drain the outbox, re-arm the timer
    void rejected(const wire::DecodeFailure& f);
    void drain();
    void arm();
    static void on_timer(uv_timer_t* t);
    static void on_retry(uv_timer_t* t);
    static void on_leave_check(uv_timer_t* t);

    uv_loop_t* loop_;
    AgentOptions options_;
    wire::Limits limits_;
    // now() runs on the monotonic clock but starts from the wall clock's reading at start, so
    // that members agree (to within their clocks' skew) on which probe period it is; see
    // Prober. A wall clock stepped later does not move it.
    uint64_t start_ns_;
    int64_t start_wall_us_;
    Time started_{};  // for kNewcomerWindow
    std::unique_ptr<Node> node_;
    std::unique_ptr<net::Envelope> envelope_;  // before the hub, which uses it: it goes after
    std::vector<std::string> notes_;
    std::unique_ptr<net::UdpSocket> udp_;
    std::unique_ptr<net::FrameHub> hub_;
    FrameChannel* channel_ = nullptr;
    net::Handle<uv_timer_t> timer_;
    net::Handle<uv_timer_t> retry_;
    net::Handle<uv_timer_t> leave_check_;
    struct Outgoing {
        Address peer;
        std::vector<uint8_t> frame;
        bool answered = false;
    };
    std::map<uint64_t, Outgoing> pulls_;  // push-pulls we opened, by connection id
    std::optional<Error> keyring_refusal() const;
    std::optional<Error> stale_or_replayed(const Name& sender, const wire::KeyringOp& op);
    void on_keyring_op(net::FrameConn& conn, const Name& sender, const wire::KeyringOp& op);
    // A member's answer (`sender` set) or why there is none.
    void keyring_answered(uint64_t conn, const Name* sender,
                          std::optional<wire::KeyringReply> reply, std::string error);
    void keyring_dial(uint64_t batch);  // opens calls up to the cap; ends the batch when done
    struct KeyringCall {  // one member's part of a keyring_everywhere, by connection id
        uint64_t batch = 0;
        size_t index = 0;      // in the batch's answers
        uint64_t request = 0;  // random: the reply must carry it back
        std::vector<uint8_t> frame;
    };
    struct KeyringBatch {
        Agent* agent = nullptr;
        uint64_t id = 0;
        wire::KeyringOp op;
        std::vector<KeyringAnswer> answers;
        std::vector<std::pair<size_t, Address>> to_dial;  // answer index, address
        size_t next_dial = 0;
        size_t open = 0;
        std::function<void(std::vector<KeyringAnswer>)> done;
        net::Handle<uv_timer_t> deadline;  // its data is the batch, whose address is stable
    };
    void keyring_batch_done(uint64_t batch);
    std::map<uint64_t, KeyringCall> keyring_calls_;
    std::map<uint64_t, std::unique_ptr<KeyringBatch>> keyring_batches_;
    struct Seen {  // keyring ops done here, for refusing one played back
        Name sender;
        uint64_t nonce = 0;
        uint64_t at_ms = 0;
    };
    std::deque<Seen> keyring_seen_;
    uint64_t next_keyring_batch_ = 1;
    Duration retry_delay_;
    uint32_t join_attempts_ = 0;
    uint32_t resolve_round_ = 0;
    // Once joined, how often seed names are resolved again.
    static constexpr Duration kSeedRefresh = std::chrono::seconds(60);
    std::vector<Address> resolved_;  // this attempt's seed addresses
    // This attempt's failures, seed by seed, and the last attempt's (what join_trouble() says).
    std::map<std::string, std::string> trouble_now_, trouble_;
    size_t resolving_ = 0;
    // Name resolution runs on libuv's threadpool and may finish after we are gone: callbacks
    // hold this and find it null then.
    std::shared_ptr<Agent*> alive_ = std::make_shared<Agent*>(this);
    std::vector<std::function<void()>> leave_done_;
    Time leave_deadline_{};
    AgentStats stats_;
    std::optional<Time> last_reject_report_;
    uint64_t rejects_unreported_ = 0;
};

}  // namespace chorus::daemon
