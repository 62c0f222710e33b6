#include "daemon/journal.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/files.hpp"
#include "daemon/json.hpp"

namespace chorus::daemon {

namespace {

// PRAGMA user_version of the schema this build writes; a newer file is refused, not guessed at.
// 1: a table keyed by task id. 2: the log of `records` (a version 1 file is converted).
// 3: records gain `where_tags`, a task's placement constraints as a JSON object ('' for none).
constexpr int kSchemaVersion = 3;

// The columns a version 1 or 2 file has, and those of this version.
#define CHORUS_JOURNAL_COLUMNS_V2                                                              \
    "id, key, type, payload, timeout_ms, state, owner, result, error, exit_code, created_ms, " \
    "started_ms, finished_ms, attempts"
#define CHORUS_JOURNAL_COLUMNS CHORUS_JOURNAL_COLUMNS_V2 ", where_tags"

int64_t epoch_ms(std::optional<Time> t) {
    if (!t) return 0;
    return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
}

std::optional<Time> from_ms(int64_t ms) {
    if (ms <= 0) return std::nullopt;
    return Time{} + milliseconds(ms);
}

// A prepared statement, finalized when it goes.
class Statement {
  public:
    Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
    ~Statement() { sqlite3_finalize(s_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    bool ok() const { return rc_ == SQLITE_OK; }
    sqlite3_stmt* get() { return s_; }
    std::string column_text(int i) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
        return p == nullptr ? std::string() : std::string(p, sqlite3_column_bytes(s_, i));
    }

  private:
    sqlite3_stmt* s_ = nullptr;
    int rc_ = SQLITE_OK;
};

}  // namespace

Error Journal::error(std::string_view doing) const {
    const int code = sqlite3_extended_errcode(db_);
    std::string why = sqlite3_errmsg(db_);
    if ((code & 0xff) == SQLITE_FULL) why += " (the disk or the journal's size limit is full)";
    return Error{"journal_unavailable", fmt::format("{} {}: {}", doing, path_, why)};
}

Status Journal::exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
        return error(fmt::format("'{}' on", sql));
    }
    return Ok{};
}

Result<std::unique_ptr<Journal>> Journal::open(const std::string& dir) {
    // The file is the agent user's alone, as the folder is (0600; SQLite gives its WAL the
    // file's mode).
    if (auto st = make_data_dir(dir); !st) return Error{"journal_unavailable", st.error().message};
    const std::string path = dir + "/tasks.db";
    if (const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); fd >= 0) {
        ::fchmod(fd, 0600);  // an older file made with the umask's mode is narrowed too
        ::close(fd);
    }  // else SQLite's open below reports why
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(
        path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
        nullptr);
    std::unique_ptr<Journal> j(new Journal(db, path));
    if (rc != SQLITE_OK) {
        return Error{"journal_unavailable",
                     fmt::format("cannot open {}: {} (is the data dir writable?)", path,
                                 db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc))};
    }
    sqlite3_extended_result_codes(db, 1);
    // WAL: a commit is one append and one sync, and readers never block the writer. FULL
    // syncs the WAL on every commit, so an acknowledged task survives a power loss too.
    // Checkpoints (copying the WAL into the database) stall the one writer; every 10,000
    // pages (a 40 MiB WAL) instead of SQLite's 1,000 took the commit p99 under wrk from
    // 62-180 ms to 28 ms.
    // EXCLUSIVE: the agent holds the file's lock for as long as it runs, so a second agent
    // started on the same data dir is refused instead of sharing (and double-running) its
    // tasks, and no commit takes or drops a lock (the WAL index lives in the heap).
    for (const char* pragma : {"PRAGMA locking_mode=EXCLUSIVE", "PRAGMA journal_mode=WAL",
                               "PRAGMA synchronous=FULL", "PRAGMA page_size=4096",
                               "PRAGMA wal_autocheckpoint=10000", "BEGIN IMMEDIATE", "COMMIT"}) {
        if (auto s = j->exec(pragma); !s) {
            auto e = s.error();
            if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_BUSY) {
                e.message = fmt::format(
                    "{} is in use by another process (is another agent running on this data "
                    "dir?)",
                    path);
            } else if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_NOTADB) {
                e.message = fmt::format(
                    "{} is not a Chorus journal (corrupt, or another file): move it away to "
                    "start with an empty journal",
                    path);
            }
            return e;
        }
    }
    {
        Statement check(db, "PRAGMA quick_check");
        if (!check.ok() || sqlite3_step(check.get()) != SQLITE_ROW ||
            check.column_text(0) != "ok") {
            return Error{"journal_unavailable",
                         fmt::format("{} is damaged ({}): move it away to start with an empty "
                                     "journal, or restore it from a copy",
                                     path, check.ok() ? check.column_text(0) : sqlite3_errmsg(db))};
        }
    }
    Statement version(db, "PRAGMA user_version");
    if (!version.ok() || sqlite3_step(version.get()) != SQLITE_ROW) return j->error("reading");
    const int found = sqlite3_column_int(version.get(), 0);
    sqlite3_reset(version.get());  // a statement left mid-read locks tables against DROP
    if (found > kSchemaVersion) {
        return Error{"journal_unavailable",
                     fmt::format("{} was written by a newer Chorus (schema {}, this build reads "
                                 "up to {})",
                                 path, found, kSchemaVersion)};
    }
    if (found < kSchemaVersion) {
        // A new file gets the table; a version 1 file has its rows moved into it, and a version
        // 2 file's table gains the new column, each in one transaction, so a crash halfway
        // leaves the old file as it was.
        std::string steps = "BEGIN IMMEDIATE;";
        if (found == 2) {
            steps += "ALTER TABLE records ADD COLUMN where_tags TEXT NOT NULL DEFAULT '';";
        } else {
            steps +=
                "CREATE TABLE records (row INTEGER PRIMARY KEY, id TEXT NOT NULL,"
                " key TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
                " timeout_ms INTEGER NOT NULL, state INTEGER NOT NULL, owner TEXT NOT NULL,"
                " result TEXT NOT NULL, error TEXT NOT NULL, exit_code INTEGER,"
                " created_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL,"
                " finished_ms INTEGER NOT NULL, attempts INTEGER NOT NULL,"
                " where_tags TEXT NOT NULL DEFAULT '');";
        }
        if (found == 1) {
            steps += "INSERT INTO records (" CHORUS_JOURNAL_COLUMNS_V2
                     ") SELECT " CHORUS_JOURNAL_COLUMNS_V2
                     " FROM tasks ORDER BY created_ms, id; DROP TABLE tasks;";
        }
        steps += fmt::format("PRAGMA user_version={}; COMMIT;", kSchemaVersion);
        if (auto st = j->exec(steps.c_str()); !st) {
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            return st.error();
        }
    }
    if (auto st = j->prepare(); !st) return st.error();
    if (auto st = j->read_rows(); !st) return st.error();
    return j;
}

Journal::~Journal() {
    for (sqlite3_stmt* st : {begin_, commit_, insert_, delete_})
        sqlite3_finalize(st);
    sqlite3_close_v2(db_);
}

Status Journal::prepare() {
    const std::pair<sqlite3_stmt**, const char*> statements[] = {
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&insert_, "INSERT INTO records (row, " CHORUS_JOURNAL_COLUMNS
                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                   "?16)"},
        {&delete_, "DELETE FROM records WHERE row = ?1"},
    };
    for (const auto& [st, sql] : statements) {
        if (sqlite3_prepare_v2(db_, sql, -1, st, nullptr) != SQLITE_OK) return error("preparing");
    }
    return Ok{};
}

Status Journal::read_rows() {
    Statement q(db_, "SELECT row, id FROM records ORDER BY row");
    if (!q.ok()) return error("reading");
    rows_.clear();
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
        const int64_t row = sqlite3_column_int64(q.get(), 0);
        rows_[q.column_text(1)] = row;
        next_row_ = std::max(next_row_, row + 1);
    }
    return rc == SQLITE_DONE ? Status{Ok{}} : Status{error("reading")};
}

Journal::Record Journal::record_of(const Task& t) {
    Record r;
    r.id = t.spec.id;
    r.key = t.spec.key;
    r.type = t.spec.type;
    r.payload = t.spec.payload;
    r.timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.spec.timeout).count();
    r.state = static_cast<int64_t>(t.state);
    r.owner = t.owner.str();
    r.result = t.result;
    r.error = t.error;
    if (t.exit_code) r.exit_code = *t.exit_code;
    r.created_ms = epoch_ms(t.created);
    r.started_ms = epoch_ms(t.started);
    r.finished_ms = epoch_ms(t.finished);
    r.attempts = t.attempts;
    if (!t.spec.where.empty()) {
        nlohmann::json where = nlohmann::json::object();
        for (const auto& [k, v] : t.spec.where)
            where[k] = v;
        r.where = dump_json(where);
    }
    return r;
}

Result<Task> Journal::task_of(Record r) const {
    // The file is ours, but it is read back after crashes and by newer builds: check what
    // would otherwise become an out-of-range enum or duration.
    constexpr int64_t kMsMax = int64_t{1} << 52;
    if (r.state < 0 || r.state > static_cast<int64_t>(TaskState::lost)) {
        return Error{"journal_unavailable",
                     fmt::format("{}: task {} has an unknown state {}", path_, r.id, r.state)};
    }
    for (const int64_t ms : {r.timeout_ms, r.created_ms, r.started_ms, r.finished_ms}) {
        if (ms < 0 || ms > kMsMax) {
            return Error{"journal_unavailable",
                         fmt::format("{}: task {} has a time out of range ({})", path_, r.id, ms)};
        }
    }
    Task t;
    t.spec.id = std::move(r.id);
    t.spec.key = std::move(r.key);
    t.spec.type = std::move(r.type);
    t.spec.payload = std::move(r.payload);
    t.spec.timeout = milliseconds(r.timeout_ms);
    t.state = static_cast<TaskState>(r.state);
    t.owner = Name(r.owner);
    t.result = std::move(r.result);
    t.error = std::move(r.error);
    if (r.exit_code) t.exit_code = static_cast<int>(*r.exit_code);
    t.created = from_ms(r.created_ms).value_or(Time{});
    t.started = from_ms(r.started_ms);
    t.finished = from_ms(r.finished_ms);
    t.attempts = static_cast<uint32_t>(std::clamp<int64_t>(r.attempts, 0, UINT32_MAX));
    if (!r.where.empty()) {
        auto where = parse_json(r.where);
        if (!where || !where->is_object()) {
            return Error{"journal_unavailable",
                         fmt::format("{}: task {} has constraints that are not a JSON object",
                                     path_, t.spec.id)};
        }
        for (const auto& [k, v] : where->items()) {
            if (!v.is_string()) {
                return Error{"journal_unavailable",
                             fmt::format("{}: task {} has a constraint that is not a string ({})",
                                         path_, t.spec.id, k)};
            }
            t.spec.where.emplace_back(k, v.get<std::string>());
        }
        std::sort(t.spec.where.begin(), t.spec.where.end());
    }
    return t;
}

Result<std::vector<Task>> Journal::load() {
    Statement q(db_, "SELECT " CHORUS_JOURNAL_COLUMNS " FROM records ORDER BY row");
    if (!q.ok()) return error("reading");
    std::vector<Task> out;
    std::unordered_map<std::string, size_t> at;  // a task's latest row wins
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
        Record row;
        row.id = q.column_text(0);
        row.key = q.column_text(1);
        row.type = q.column_text(2);
        row.payload = q.column_text(3);
        row.timeout_ms = sqlite3_column_int64(q.get(), 4);
        row.state = sqlite3_column_int64(q.get(), 5);
        row.owner = q.column_text(6);
        row.result = q.column_text(7);
        row.error = q.column_text(8);
        if (sqlite3_column_type(q.get(), 9) != SQLITE_NULL) {
            row.exit_code = sqlite3_column_int64(q.get(), 9);
        }
        row.created_ms = sqlite3_column_int64(q.get(), 10);
        row.started_ms = sqlite3_column_int64(q.get(), 11);
        row.finished_ms = sqlite3_column_int64(q.get(), 12);
        row.attempts = sqlite3_column_int64(q.get(), 13);
        row.where = q.column_text(14);
        auto task = task_of(std::move(row));
        if (!task) return task.error();
        Task t = std::move(*task);
        if (auto [it, added] = at.try_emplace(t.spec.id, out.size()); !added) {
            out[it->second] = std::move(t);
        } else {
            out.push_back(std::move(t));
        }
    }
    if (rc != SQLITE_DONE) return error("reading");
    // Oldest first, so queued tasks resume in the order they came.
    std::stable_sort(out.begin(), out.end(), [](const Task& a, const Task& b) {
        return std::tie(a.created, a.spec.id) < std::tie(b.created, b.spec.id);
    });
    return out;
}

uint64_t Journal::put(const Task& t) {
    Record r = record_of(t);  // outside the lock: the writer may be taking the batch
    std::lock_guard lock(mu_);
    staged_.insert_or_assign(r.id, std::move(r));
    return ++changes_;
}

uint64_t Journal::remove(std::string_view id) {
    std::lock_guard lock(mu_);
    staged_.insert_or_assign(std::string(id), std::nullopt);
    return ++changes_;
}

void Journal::probe() {
    std::lock_guard lock(mu_);
    probe_ = true;
}

void Journal::unstage(std::string_view id) {
    std::lock_guard lock(mu_);
    if (auto it = staged_.find(id); it != staged_.end()) staged_.erase(it);
}

size_t Journal::staged() const {
    std::lock_guard lock(mu_);
    return staged_.size();
}

Journal::Stats Journal::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

Status Journal::commit(uint64_t* upto) {
    Batch batch = take_staged(upto);
    const Status st = write(batch);
    written(st, std::move(batch));
    return st;
}

Journal::Batch Journal::take_staged(uint64_t* upto) {
    // Only the swap holds the lock: the loop stages on while the batch is built.
    decltype(staged_) staged;
    Batch batch;
    {
        std::lock_guard lock(mu_);
        if (upto != nullptr) *upto = changes_;
        staged.swap(staged_);
        batch.probe = std::exchange(probe_, false);
    }
    batch.changes.reserve(staged.size());
    for (auto& [id, record] : staged) {
        Change c{id, std::move(record)};
        if (c.record) c.row = next_row_++;
        if (auto r = rows_.find(id); r != rows_.end()) c.replaces = r->second;
        batch.changes.push_back(std::move(c));
    }
    return batch;
}

void Journal::written(const Status& outcome, Batch batch) {
    if (outcome) {
        for (const Change& c : batch.changes) {  // rows_ is the writing thread's alone: no lock
            if (c.record) {
                rows_[c.id] = c.row;
            } else {
                rows_.erase(c.id);
            }
        }
        std::lock_guard lock(mu_);
        if (!batch.empty()) ++stats_.commits;
        stats_.records += batch.changes.size();
        return;
    }
    std::lock_guard lock(mu_);
    ++stats_.failures;
    // What was staged since is newer than the failed batch's record of the same task; row
    // numbers are given again at the next take, against the rows the file still has.
    for (Change& c : batch.changes)
        staged_.try_emplace(std::move(c.id), std::move(c.record));
}

Status Journal::write(const Batch& batch) {
    if (batch.empty()) return Ok{};
    const auto fail = [this](std::string_view doing) -> Status {
        const Error e = error(doing);
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return e;
    };
    const auto step = [](sqlite3_stmt* st) {
        const int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE;
    };
    if (!step(begin_)) return fail("starting a transaction on");
    if (batch.probe) {
        // Row 0 is never a task's (rows start at 1); added and removed, it leaves nothing.
        const std::string pad(4096, 'p');
        const std::string sql =
            fmt::format("INSERT INTO records (row, " CHORUS_JOURNAL_COLUMNS
                        ") VALUES (0, '', '', '', '{}', 0, 0, '', '', '', NULL, 0, 0, 0, 0, '');"
                        "DELETE FROM records WHERE row = 0;",
                        pad);
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            return fail("probing");
        }
    }
    for (const Change& c : batch.changes) {
        if (c.replaces != 0) {
            sqlite3_bind_int64(delete_, 1, c.replaces);
            if (!step(delete_)) return fail("writing to");
        }
        if (!c.record) continue;
        const Record& t = *c.record;
        sqlite3_stmt* s = insert_;
        const auto text = [s](int i, std::string_view v) {
            sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        };
        sqlite3_bind_int64(s, 1, c.row);
        text(2, c.id);
        text(3, t.key);
        text(4, t.type);
        text(5, t.payload);
        sqlite3_bind_int64(s, 6, t.timeout_ms);
        sqlite3_bind_int64(s, 7, t.state);
        text(8, t.owner);
        text(9, t.result);
        text(10, t.error);
        if (t.exit_code) {
            sqlite3_bind_int64(s, 11, *t.exit_code);
        } else {
            sqlite3_bind_null(s, 11);
        }
        sqlite3_bind_int64(s, 12, t.created_ms);
        sqlite3_bind_int64(s, 13, t.started_ms);
        sqlite3_bind_int64(s, 14, t.finished_ms);
        sqlite3_bind_int64(s, 15, t.attempts);
        text(16, t.where);
        const bool ok = step(s);
        sqlite3_clear_bindings(s);  // the texts it points at are the batch's
        if (!ok) return fail("writing to");
    }
    if (!step(commit_)) return fail("committing to");
    return Ok{};
}

Result<int64_t> Journal::count_rows() {
    Statement q(db_, "SELECT count(*) FROM records");
    if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return error("reading");
    return sqlite3_column_int64(q.get(), 0);
}

Status Journal::limit_pages(uint64_t pages) {
    return exec(fmt::format("PRAGMA max_page_count={}", pages).c_str());
}

// ---------------------------------------------------------------------------------------------
// JournalWriter

JournalWriter::JournalWriter(uv_loop_t* loop, std::shared_ptr<Journal> journal, Done done)
    : journal_(std::move(journal)), done_(std::move(done)) {
    async_ = net::make_handle<uv_async_t>(
                 loop,
                 [](uv_loop_t* l, uv_async_t* a) {
                     return uv_async_init(l, a, [](uv_async_t* h) {
                         if (auto* self = static_cast<JournalWriter*>(h->data)) self->deliver();
                     });
                 },
                 this)
                 .value();
    thread_ = std::thread([this] { run(); });
}

JournalWriter::~JournalWriter() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void JournalWriter::wake() {
    {
        std::lock_guard lock(mu_);
        wake_ = true;
    }
    cv_.notify_one();
}

void JournalWriter::resume() {
    {
        std::lock_guard lock(mu_);
        paused_ = false;
    }
    cv_.notify_one();
}

bool JournalWriter::busy() const {
    std::lock_guard lock(mu_);
    return wake_ || writing_ || !outcomes_.empty();
}

uint64_t JournalWriter::waits() const {
    std::lock_guard lock(mu_);
    return waits_;
}

void JournalWriter::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] {
            const bool work = stop_ || (wake_ && !paused_);
            if (!work) ++waits_;
            return work;
        });
        if (stop_) return;
        wake_ = false;
        writing_ = true;
        lock.unlock();
        uint64_t upto = 0;
        Status st = journal_->commit(&upto);
        // What was staged while this one was written goes at once: the next commit starts
        // now, not when the loop next hears from us.
        const bool more = journal_->staged() > 0;
        lock.lock();
        writing_ = false;
        if (st) {
            wake_ = wake_ || more;
        } else {
            paused_ = true;
        }
        outcomes_.emplace_back(upto, std::move(st));
        uv_async_send(async_.get());
    }
}

void JournalWriter::deliver() {
    std::deque<std::pair<uint64_t, Status>> outcomes;
    {
        std::lock_guard lock(mu_);
        outcomes.swap(outcomes_);
    }
    for (auto& [upto, st] : outcomes)
        done_(upto, st);
}

}  // namespace chorus::daemon
