// A peer that never answers a SYN, on loopback and without a firewall: a TCP listener that
// never accepts, whose accept queue is full. Linux then drops every further SYN to it, so a
// dial hangs in SYN_SENT (for the kernel's two minutes of retries) exactly as it would toward a
// host behind a partition. The UDP port of the same number is bound too and never read, so
// datagrams to it vanish as well.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace chorus::test {

class BlackHole {
  public:
    BlackHole() {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        socklen_t len = sizeof(a);
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        ::listen(listener_, 0);  // a queue of one completed connection
        udp_ = ::socket(AF_INET, SOCK_DGRAM, 0);
        ::bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        // Fill the queue with one connection whose handshake completes and that is never
        // accepted: the queue is full once it holds more than the backlog of 0, and from then
        // on the kernel drops SYNs (tcp_abort_on_overflow is off by default).
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        fillers_.push_back(fd);
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 5000);  // connected: on loopback at once
        ok_ = (p.revents & POLLOUT) != 0;
    }
    // The queue was filled: dials to it hang.
    bool ok() const { return ok_; }
    ~BlackHole() {
        for (int fd : fillers_)
            ::close(fd);
        ::close(listener_);
        ::close(udp_);
    }
    BlackHole(const BlackHole&) = delete;
    BlackHole& operator=(const BlackHole&) = delete;

    uint16_t port() const { return port_; }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    int listener_ = -1;
    int udp_ = -1;
    uint16_t port_ = 0;
    std::vector<int> fillers_;
    bool ok_ = false;
};

}  // namespace chorus::test
