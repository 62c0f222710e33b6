#include "http/audit.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/json.hpp"
#include "daemon/log.hpp"
#include "http/acl.hpp"

namespace chorus::http {

Result<std::unique_ptr<AuditLog>> AuditLog::open(Options options) {
    if (options.path.empty()) return Error{"bad_audit_log", "audit_log: a file name is needed"};
    if (options.bytes_max < 4096) {
        return Error{"bad_audit_log", "audit_log_bytes_max: at least 4096"};
    }
    auto log = std::unique_ptr<AuditLog>(new AuditLog(std::move(options)));
    if (auto st = log->reopen(); !st) return st.error();
    return log;
}

AuditLog::~AuditLog() {
    if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::reopen() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) {
        return Error{"bad_audit_log",
                     fmt::format("audit_log: cannot open {}: {}", options_.path, strerror(errno))};
    }
    struct stat st {};
    size_ = fstat(fd_, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
    return Ok{};
}

void AuditLog::rotate() {
    for (size_t i = options_.files_kept; i > 1; --i) {
        const std::string from = fmt::format("{}.{}", options_.path, i - 1);
        std::rename(from.c_str(), fmt::format("{}.{}", options_.path, i).c_str());
    }
    if (options_.files_kept > 0) {
        std::rename(options_.path.c_str(), (options_.path + ".1").c_str());
    } else {
        ::unlink(options_.path.c_str());
    }
    ++rotations_;
    (void)reopen();  // failing, it leaves no file open: the next line tries again
}

bool AuditLog::wanted(const Request& req, const Response& r) {
    return mutating(req.method) || r.status == 401 || r.status == 403;
}

void AuditLog::record(const Request& req, const Response& r) {
    const bool ok = r.status >= 200 && r.status <= 299;
    const std::string outcome = !r.error.empty() ? r.error
                                : ok             ? "ok"
                                                 : fmt::format("status_{}", r.status);
    nlohmann::json j = {{"time", daemon::utc_timestamp()},
                        {"caller", req.caller.empty() ? "anonymous" : req.caller},
                        {"peer", req.peer},
                        {"method", req.method},
                        {"path", req.path},
                        {"status", r.status},
                        {"outcome", outcome}};
    if (!req.client_cert.empty()) j["cert"] = req.client_cert;
    if (!r.subject.empty()) j[req.path.starts_with("/v1/tasks") ? "task" : "subject"] = r.subject;
    write_line(daemon::dump_json(j) + "\n");
}

void AuditLog::write_line(const std::string& line) {
    if (fd_ >= 0 && size_ > 0 && size_ + line.size() > options_.bytes_max) rotate();
    if (fd_ < 0 && !reopen()) {
        ++failures_;
        return;
    }
    size_t done = 0;
    while (done < line.size()) {
        const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            ++failures_;
            // A line cut short is ended, so the next one is whole JSON on a line of its own.
            if (done > 0 && ::write(fd_, "\n", 1) == 1) ++done;
            size_ += done;
            return;
        }
        done += static_cast<size_t>(n);
    }
    size_ += line.size();
    ++lines_;
}

}  // namespace chorus::http
