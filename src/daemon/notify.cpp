#include "daemon/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace chorus::daemon {

Notified notify_systemd(std::string_view state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || *path == '\0') return {};
    const std::string_view p(path);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if ((p[0] != '/' && p[0] != '@') || p.size() >= sizeof(addr.sun_path)) {
        return {false, fmt::format("NOTIFY_SOCKET {} is not a socket path", p)};
    }
    std::memcpy(addr.sun_path, p.data(), p.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + p.size());
    if (p[0] == '@') {
        addr.sun_path[0] = '\0';  // the abstract namespace: no terminating NUL counted
    } else {
        ++len;
    }
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {false, fmt::format("socket: {}", std::strerror(errno))};
    const ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), len);
    const int err = errno;
    close(fd);
    if (n < 0) return {false, fmt::format("sendto {}: {}", p, std::strerror(err))};
    return {true, ""};
}

}  // namespace chorus::daemon
