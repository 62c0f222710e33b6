// The durable record of a node's tasks (issue 5): SQLite in WAL mode, one file under the
// agent's --data-dir.
//
// The task service stages every change (a task accepted, started, finished, evicted) and
// commits what is staged in one transaction, synced before the commit returns; only then does
// the service acknowledge what depended on it. One sync serves every change staged since the
// last commit (group commit), so durability costs a sync per batch, not per task. A failed
// commit (disk full, I/O error) rolls back and keeps what was staged, so nothing is
// half-written and a later commit can still write it; the service refuses new tasks until a
// commit succeeds again.
//
// The file is a log: every change appends a row with the next sequence number and deletes the
// task's previous row, so each live task has exactly one row and no compaction is needed.
// Rows keyed by a growing number land on the last pages of the table, so a commit of a
// hundred changes writes a few pages; keyed by task id (random), each change dirtied its own
// page of the table and of the id index, and under wrk the commits wrote 16 pages for 8 rows.
//
// Why SQLite: crash safety (atomic commit, WAL recovery after a crash or power loss) is the
// hard part of a journal, and SQLite's is among the most tested code there is; it is an
// embedded library (Debian's libsqlite3-dev, linked statically), not a server.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "core/task.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace chorus::daemon {

class Journal {
  public:
    // Opens (or creates) `dir`/tasks.db. Errors name the file and what to do: an unwritable
    // folder, a file that is not a journal (corrupt), a journal of a newer version.
    static Result<std::unique_ptr<Journal>> open(const std::string& dir);
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    // Every task recorded at the last successful commit, oldest first.
    Result<std::vector<Task>> load();

    // Stages a task's record (its state now) or its removal. Staging the same id again
    // replaces what was staged: only the latest record of a task is written.
    void put(const Task& t);
    void remove(std::string_view id);
    // Drops what was staged for `id` (a task that is being refused after all).
    void unstage(std::string_view id);
    size_t staged() const { return staged_.size(); }

    // Writes everything staged in one transaction and syncs it. On error nothing of it is
    // kept in the file, everything stays staged, and the error says why.
    Status commit();

    // commit() in three steps, so the write (and its sync) can run on another thread while
    // the loop goes on: take what is staged, write it there, then count the outcome here and,
    // after a failure, put the batch back under whatever was staged since. Only one write
    // may run at a time, and nothing else may touch the journal meanwhile but staging.
    struct Change {
        std::string id;
        std::optional<Task> record;  // nullopt: remove
        int64_t row = 0;             // the row it appends (a record)
        int64_t replaces = 0;        // the task's row it deletes (0: none)
    };
    using Batch = std::vector<Change>;
    Batch take_staged();
    Status write(const Batch& batch);  // the connection is opened serialized: safe off-loop
    void written(const Status& outcome, Batch batch);

    // Test hooks: caps the file at `pages` pages of 4 KiB, so a test can fill the "disk";
    // counts the rows in the file (the file is locked to this connection while it is open).
    Status limit_pages(uint64_t pages);
    Result<int64_t> count_rows();

    const std::string& path() const { return path_; }
    struct Stats {
        uint64_t commits = 0;
        uint64_t records = 0;  // records written or removed
        uint64_t failures = 0;
    };
    const Stats& stats() const { return stats_; }

  private:
    Journal(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    Status exec(const char* sql);
    Error error(std::string_view doing) const;
    Status prepare();
    Status read_rows();

    sqlite3* db_;
    std::string path_;
    std::map<std::string, std::optional<Task>, std::less<>> staged_;  // nullopt: remove
    // The row each task has in the file, as of the last successful commit, and the next
    // row number: written only on the loop's thread, between writes.
    std::unordered_map<std::string, int64_t> rows_;
    int64_t next_row_ = 1;
    // Prepared once: a commit runs four statements and parses none.
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* delete_ = nullptr;
    Stats stats_;
};

}  // namespace chorus::daemon
