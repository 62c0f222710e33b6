// The audit log (`--audit-log FILE`): one JSON line for every mutating call (any method but GET
// and HEAD) and every refusal of the access policy, whatever its method:
//
//   {"time": "2026-12-01T04:10:00.123Z", "caller": "ops", "peer": "127.0.0.1:50312",
//    "method": "POST", "path": "/v1/tasks", "status": 202, "outcome": "ok",
//    "task": "3f0c...-9a1e"}
//
// `caller` is the token's id (without tokens, the TLS client certificate's subject, else
// "anonymous"), `cert` that subject whenever there is one, `outcome` "ok" for a 2xx or the
// error's code, and `task` (or `subject`: a keyring op and the key's fingerprint) what the
// call acted on. Never a secret, a header, a query or a body: a payload stays out of it.
//
// Lines are appended with one write(2) each, so a crash of the agent loses none that were
// written; the file (0600) rotates past bytes_max to FILE.1, FILE.1 to FILE.2, and so on,
// keeping files_kept old files. A write that fails is counted (chorus_audit_failures_total)
// and the call goes on: the audit log records, it does not gate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/result.hpp"
#include "http/server.hpp"

namespace chorus::http {

class AuditLog {
  public:
    struct Options {
        std::string path;
        size_t bytes_max = 64u << 20;
        size_t files_kept = 5;
    };
    static Result<std::unique_ptr<AuditLog>> open(Options options);
    ~AuditLog();
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    // Whether the call is one to write down (see above).
    static bool wanted(const Request& req, const Response& r);
    // Writes the line for `req` answered by `r`.
    void record(const Request& req, const Response& r);
    void write_line(const std::string& line);

    uint64_t lines() const { return lines_; }
    uint64_t failures() const { return failures_; }
    uint64_t rotations() const { return rotations_; }

  private:
    explicit AuditLog(Options options) : options_(std::move(options)) {}
    Status reopen();
    void rotate();

    Options options_;
    int fd_ = -1;
    size_t size_ = 0;
    uint64_t lines_ = 0;
    uint64_t failures_ = 0;
    uint64_t rotations_ = 0;
};

}  // namespace chorus::http
