// systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to the unix
// socket $NOTIFY_SOCKET names ("/run/systemd/notify", or "@name" in the abstract namespace).
// With Type=notify, systemd holds a unit "activating" until READY=1, so units ordered after
// chorus start once it has joined; STOPPING=1 says a leave is under way.
#pragma once

#include <string>
#include <string_view>

namespace chorus::daemon {

// Sends `state` ("READY=1\nSTATUS=joined") to $NOTIFY_SOCKET. Without the variable (not run
// by systemd, or by a unit of another type) it does nothing and says so: false. An error
// sending is returned as text, never thrown: a notification that cannot go is not fatal.
struct Notified {
    bool sent = false;
    std::string error;  // why not, when the variable was there
};
Notified notify_systemd(std::string_view state);

}  // namespace chorus::daemon
