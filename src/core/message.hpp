// The protocol's messages as the core sees them: plain structs, no wire format.
//
// src/wire converts between these and flatbuffers bytes, verifying and bounding everything on
// the way in, so a value of these types that reaches the core is well-formed (names non-empty,
// strings within their limits). A packet is one optional body plus piggybacked membership
// updates (SWIM §4.4: dissemination rides on the failure detector's messages).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/types.hpp"

namespace chorus {

// ---- membership updates (disseminated by gossip) ----

// "name is alive at incarnation, reachable at addr". Also how a member announces itself.
struct AliveUpdate {
    Name name;
    Address addr;
    Name http;  // the member's HTTP API address, for clients and dashboards
    Incarnation incarnation;
    Tags tags;
    uint8_t protocol = kProtocolVersion;
};

// "from suspects name at incarnation" (SWIM §4.2). Distinct `from`s are Lifeguard's
// independent confirmations.
struct SuspectUpdate {
    Name name;
    Incarnation incarnation;
    Name from;
};

// "from declares name dead at incarnation"; `left` when the member announced its own departure.
struct DeadUpdate {
    Name name;
    Incarnation incarnation;
    Name from;
    bool left = false;
    // An operator's force-leave --prune: a member already gone is forgotten at once.
    bool prune = false;
};

using Update = std::variant<AliveUpdate, SuspectUpdate, DeadUpdate>;

const Name& update_subject(const Update& u);

// ---- failure detector messages (SWIM §4.1) ----

// Direct probe. `target` names the member meant, so a node that took over an address does not
// answer for its predecessor.
struct Ping {
    uint32_t seq = 0;
    Name target;
};

// Ask the receiver to probe `target` for us (ping-req) and relay the ack; Lifeguard §4.3 adds
// the nack a relay sends when the target stays silent.
struct PingReq {
    uint32_t seq = 0;
    Name target;
    Address target_addr;
};

struct Ack {
    uint32_t seq = 0;
};

struct Nack {
    uint32_t seq = 0;
};

using Body = std::variant<std::monostate, Ping, PingReq, Ack, Nack>;

struct Packet {
    uint8_t version = kProtocolVersion;
    std::string cluster;
    Name sender;
    Address sender_addr;
    uint32_t sender_load_milli =
        0;  // the sender's load × 1000 (ARCHITECTURE.md, "Tasks"); 0 until tasks run
    Body body;
    std::vector<Update> updates;
    // The low 32 bits of the sender's ring checksum (Ring::checksum), on some pings and acks
    // (Node::send); 0 when not said.
    uint32_t sender_ring_checksum = 0;
};

// ---- anti-entropy (push-pull over a stream) ----

struct MemberSnapshot {
    Name name;
    Address addr;
    Name http;
    Incarnation incarnation;
    MemberState state = MemberState::alive;
    Tags tags;
    uint32_t load_milli = 0;
    uint8_t protocol = kProtocolVersion;
};

struct PushPull {
    uint8_t version = kProtocolVersion;
    std::string cluster;
    Name sender;
    bool join = false;  // the sender is joining: the receiver answers even before it knows it
    std::vector<MemberSnapshot> members;
};

// An upper bound of the encoded size of an update inside a packet, so the core can fill a packet
// to `packet_bytes_max` without knowing the wire format. test/wire checks the bound against the
// real encoder.
size_t encoded_size_bound(const Update& u);
// The same bound for a packet with no updates.
size_t encoded_size_bound(const Packet& p);

}  // namespace chorus
