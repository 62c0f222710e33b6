// The durable record of a node's tasks: SQLite in WAL mode, one file under the
// agent's --data-dir.
//
// The task service stages every change (a task accepted, started, finished, evicted) and a
// JournalWriter, on a thread of its own, commits what is staged in one transaction, synced
// before the commit returns; only then does the service acknowledge what depended on it. One
// sync serves every change staged since the last commit (group commit), so durability costs a
// sync per batch, not per task, and the writer starts the next commit as soon as one returns.
// A failed commit (disk full, I/O error) rolls back and keeps what was staged, so nothing is
// half-written and a later commit can still write it; the service refuses the tasks that
// commit held.
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

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <uv.h>

#include "core/result.hpp"
#include "core/task.hpp"
#include "net/handle.hpp"

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

    // Stages a task's record (its state now) or its removal, and returns the change's number:
    // a commit reports the number of the last change it holds. Staging the same id again
    // replaces what was staged: only the latest record of a task is written. Staging is safe
    // from any thread; the record is copied as plain data (see Record).
    uint64_t put(const Task& t);
    uint64_t remove(std::string_view id);
    // Drops what was staged for `id` (a task that is being refused after all).
    void unstage(std::string_view id);
    // Makes the next commit write even if nothing is staged: a row of a few KiB, added and
    // removed in one transaction, so a journal that failed learns whether it can write again
    // without waiting for a task to try with.
    void probe();
    size_t staged() const;

    // Writes everything staged in one transaction and syncs it. On error nothing of it is
    // kept in the file, everything stays staged, and the error says why. `upto` gets the
    // number of the last change the commit held. Only one thread may commit, one commit at a
    // time (the connection is opened serialized, so off the loop is safe); staging goes on
    // meanwhile.
    Status commit(uint64_t* upto = nullptr);

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
    Stats stats() const;

    // A task as the journal keeps it: plain data only. A Task holds Names, whose interning
    // pool is the loop thread's alone (core/name.hpp), and what is staged is written, kept or
    // destroyed on the writer's thread; so a Task is turned into a Record when it is staged,
    // and back into a Task only when load() runs, on the loop.
    struct Record {
        std::string id, key, type, payload, owner, result, error;
        int64_t timeout_ms = 0;
        int64_t state = 0;
        std::optional<int64_t> exit_code;
        int64_t created_ms = 0, started_ms = 0, finished_ms = 0;
        int64_t attempts = 0;
        std::string where;  // placement constraints, a JSON object ('' for none)
    };
    static Record record_of(const Task& t);
    Result<Task> task_of(Record r) const;

  private:
    Journal(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    // commit() in three steps: take what is staged (only the swap under the lock), write it,
    // then count the outcome and, after a failure, put the batch back under whatever was
    // staged since.
    struct Change {
        std::string id;
        std::optional<Record> record;  // nullopt: remove
        int64_t row = 0;               // the row it appends (a record)
        int64_t replaces = 0;          // the task's row it deletes (0: none)
    };
    struct Batch {
        std::vector<Change> changes;
        bool probe = false;
        bool empty() const { return changes.empty() && !probe; }
    };
    Batch take_staged(uint64_t* upto);
    Status write(const Batch& batch);
    void written(const Status& outcome, Batch batch);
    Status exec(const char* sql);
    Error error(std::string_view doing) const;
    Status prepare();
    Status read_rows();

    sqlite3* db_;
    std::string path_;
    mutable std::mutex mu_;  // staged_, changes_ and stats_: the loop stages, the writer takes
    TaskIdMap<std::optional<Record>> staged_;  // nullopt: remove
    uint64_t changes_ = 0;
    // The row each task has in the file, as of the last successful commit, and the next
    // row number: used only by the one thread that writes, one write at a time.
    std::unordered_map<std::string, int64_t> rows_;
    int64_t next_row_ = 1;
    bool probe_ = false;  // under mu_
    // Prepared once: a commit runs four statements and parses none.
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* delete_ = nullptr;
    Stats stats_;
};

// Commits a journal on a thread of its own, one commit after another while changes are
// staged, so a commit starts the moment the previous one returns instead of a loop turn later.
// Outcomes come back on the loop: `done(upto, status)` says that every change numbered up to
// `upto` is stored, or that the commit holding them failed. After a failure the writer waits
// for resume(), so the loop can unstage what it refuses before anything is retried.
class JournalWriter {
  public:
    using Done = std::function<void(uint64_t upto, const Status& status)>;
    JournalWriter(uv_loop_t* loop, std::shared_ptr<Journal> journal, Done done);
    ~JournalWriter();  // waits for a commit under way, then stops the thread
    JournalWriter(const JournalWriter&) = delete;
    JournalWriter& operator=(const JournalWriter&) = delete;

    void wake();        // something was staged
    void resume();      // after a failure: commits may be tried again
    bool busy() const;  // a commit is asked for or under way
    // How many times the thread has found nothing it may do and gone back to waiting: a test
    // that wakes a paused writer waits for this to move to know the wake was seen.
    uint64_t waits() const;

  private:
    void run();
    void deliver();

    std::shared_ptr<Journal> journal_;
    Done done_;
    net::Handle<uv_async_t> async_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool wake_ = false;
    bool paused_ = false;
    bool writing_ = false;
    uint64_t waits_ = 0;
    std::deque<std::pair<uint64_t, Status>> outcomes_;
    std::thread thread_;
};

}  // namespace chorus::daemon
