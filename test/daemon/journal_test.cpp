#include "daemon/journal.hpp"

#include <catch2/catch.hpp>

#include "daemon/temp_dir.hpp"
#include "net/loop.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace chorus;
using chorus::test::TempDir;
using namespace chorus::daemon;

namespace {

Task task(const std::string& id, TaskState state = TaskState::queued) {
    Task t;
    t.spec = TaskSpec{id, "key-" + id, "exec", R"({"n":1})", milliseconds(1500), {}};
    t.state = state;
    t.owner = Name("n1");
    t.created = Time{} + milliseconds(1'700'000'000'000);
    if (state != TaskState::queued) {
        t.started = t.created + milliseconds(10);
        t.attempts = 1;
    }
    if (is_finished(state)) {
        t.finished = t.created + milliseconds(900);
        t.result = state == TaskState::succeeded ? R"({"ok":true})" : "";
        t.error = state == TaskState::failed ? "exit status 3" : "";
        if (state == TaskState::failed) t.exit_code = 3;
    }
    return t;
}

}  // namespace

TEST_CASE("committed tasks come back, every field, after the journal is reopened") {
    TempDir d;
    {
        auto j = Journal::open(d.path);
        REQUIRE(j.ok());
        (*j)->put(task("a"));
        (*j)->put(task("b", TaskState::running));
        (*j)->put(task("c", TaskState::failed));
        REQUIRE((*j)->commit().ok());
        REQUIRE((*j)->staged() == 0);
    }
    auto j = Journal::open(d.path);
    REQUIRE(j.ok());
    auto tasks = (*j)->load();
    REQUIRE(tasks.ok());
    REQUIRE(tasks->size() == 3);
    const Task& c = (*tasks)[2];
    const Task want = task("c", TaskState::failed);
    REQUIRE(c.spec.id == "c");
    REQUIRE(c.spec.key == want.spec.key);
    REQUIRE(c.spec.type == "exec");
    REQUIRE(c.spec.payload == want.spec.payload);
    REQUIRE(c.spec.timeout == milliseconds(1500));
    REQUIRE(c.state == TaskState::failed);
    REQUIRE(c.owner == "n1");
    REQUIRE(c.error == "exit status 3");
    REQUIRE(c.exit_code == 3);
    REQUIRE(c.created == want.created);
    REQUIRE(c.started == want.started);
    REQUIRE(c.finished == want.finished);
    REQUIRE(c.attempts == 1);
    REQUIRE_FALSE((*tasks)[0].started);
    REQUIRE_FALSE((*tasks)[0].exit_code);
}

TEST_CASE("only a task's latest staged record is written, and a removal removes it") {
    TempDir d;
    auto j = std::move(Journal::open(d.path).value());
    j->put(task("a"));
    j->put(task("a", TaskState::running));
    j->put(task("b"));
    REQUIRE(j->staged() == 2);
    REQUIRE(j->commit().ok());
    j->remove("b");
    j->put(task("c"));
    j->unstage("c");
    REQUIRE(j->commit().ok());
    auto tasks = j->load().value();
    REQUIRE(tasks.size() == 1);
    REQUIRE(tasks[0].spec.id == "a");
    REQUIRE(tasks[0].state == TaskState::running);
}

TEST_CASE("each change of a task replaces its row: the file holds one row per task") {
    TempDir d;
    {
        auto j = std::move(Journal::open(d.path).value());
        for (const auto state : {TaskState::queued, TaskState::running, TaskState::succeeded}) {
            j->put(task("a", state));
            j->put(task("b", state));
            REQUIRE(j->commit().ok());
        }
        REQUIRE(j->count_rows().value() == 2);
        j->remove("b");
        REQUIRE(j->commit().ok());
        REQUIRE(j->count_rows().value() == 1);
    }
    // The rows are known again after a reopen: a change still replaces, not adds.
    auto j = std::move(Journal::open(d.path).value());
    j->put(task("a", TaskState::failed));
    REQUIRE(j->commit().ok());
    REQUIRE(j->count_rows().value() == 1);
    REQUIRE(j->load().value().at(0).state == TaskState::failed);
}

TEST_CASE("tasks load oldest first, whatever order they changed in") {
    TempDir d;
    auto j = std::move(Journal::open(d.path).value());
    for (int i = 0; i < 3; ++i) {
        Task t = task("t" + std::to_string(i));
        t.created += milliseconds(i);
        j->put(t);
        REQUIRE(j->commit().ok());
    }
    j->put(task("t0", TaskState::running));  // its row is now the newest
    REQUIRE(j->commit().ok());
    const auto tasks = j->load().value();
    REQUIRE(tasks.size() == 3);
    REQUIRE(tasks[0].spec.id == "t0");
    REQUIRE(tasks[2].spec.id == "t2");
}

TEST_CASE("a journal of the second version gains placement constraints, its tasks kept") {
    TempDir d;
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open((d.path + "/tasks.db").c_str(), &db) == SQLITE_OK);
        REQUIRE(sqlite3_exec(
                    db,
                    "CREATE TABLE records (row INTEGER PRIMARY KEY, id TEXT NOT NULL, key TEXT NOT "
                    "NULL, type TEXT NOT NULL, payload TEXT NOT NULL, timeout_ms INTEGER NOT "
                    "NULL, state INTEGER NOT NULL, owner TEXT NOT NULL, result TEXT NOT NULL, "
                    "error TEXT NOT NULL, exit_code INTEGER, created_ms INTEGER NOT NULL, "
                    "started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, attempts "
                    "INTEGER NOT NULL);"
                    "INSERT INTO records VALUES (1, 'w', 'kw', 'echo', '2', 500, 0, 'n1', '', "
                    "'', NULL, 1000, 0, 0, 0);"
                    "PRAGMA user_version=2;",
                    nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    {
        auto j = Journal::open(d.path);
        REQUIRE(j.ok());
        const auto tasks = (*j)->load().value();
        REQUIRE(tasks.size() == 1);
        REQUIRE(tasks[0].spec.id == "w");
        REQUIRE(tasks[0].spec.where.empty());
        Task gpu = task("g");
        gpu.spec.where = {{"role", "gpu"}, {"zone", "b"}};
        (*j)->put(gpu);
        REQUIRE((*j)->commit().ok());
    }
    auto j = Journal::open(d.path);
    REQUIRE(j.ok());
    const auto tasks = (*j)->load().value();
    REQUIRE(tasks.size() == 2);
    const auto g =
        std::find_if(tasks.begin(), tasks.end(), [](const Task& t) { return t.spec.id == "g"; });
    REQUIRE(g != tasks.end());
    REQUIRE(g->spec.where == Tags{{"role", "gpu"}, {"zone", "b"}});
}

TEST_CASE("a journal of the first version is converted, its tasks kept") {
    TempDir d;
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open((d.path + "/tasks.db").c_str(), &db) == SQLITE_OK);
        REQUIRE(
            sqlite3_exec(db,
                         "CREATE TABLE tasks (id TEXT PRIMARY KEY, key TEXT NOT NULL, type TEXT "
                         "NOT NULL, payload TEXT NOT NULL, timeout_ms INTEGER NOT NULL, state "
                         "INTEGER NOT NULL, owner TEXT NOT NULL, result TEXT NOT NULL, error "
                         "TEXT NOT NULL, exit_code INTEGER, created_ms INTEGER NOT NULL, "
                         "started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, attempts "
                         "INTEGER NOT NULL);"
                         "INSERT INTO tasks VALUES ('x', 'kx', 'echo', '1', 500, 2, 'n1', "
                         "'\"r\"', '', 0, 2000, 2001, 2002, 1);"
                         "INSERT INTO tasks VALUES ('w', 'kw', 'echo', '2', 500, 0, 'n1', '', "
                         "'', NULL, 1000, 0, 0, 0);"
                         "PRAGMA user_version=1;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    auto j = Journal::open(d.path);
    REQUIRE(j.ok());
    const auto tasks = (*j)->load().value();
    REQUIRE(tasks.size() == 2);
    REQUIRE(tasks[0].spec.id == "w");  // created first
    REQUIRE(tasks[0].state == TaskState::queued);
    REQUIRE_FALSE(tasks[0].exit_code);
    REQUIRE(tasks[1].spec.id == "x");
    REQUIRE(tasks[1].state == TaskState::succeeded);
    REQUIRE(tasks[1].result == "\"r\"");
    REQUIRE(tasks[1].exit_code == 0);
    REQUIRE(tasks[1].finished == Time{} + milliseconds(2002));
    (*j)->put(tasks[1]);
    REQUIRE((*j)->commit().ok());
    REQUIRE((*j)->count_rows().value() == 2);
}

TEST_CASE("a full disk fails the commit, keeps nothing of it, and keeps it staged for later") {
    TempDir d;
    auto j = std::move(Journal::open(d.path).value());
    j->put(task("small"));
    REQUIRE(j->commit().ok());
    REQUIRE(j->limit_pages(8).ok());  // 32 KiB in all
    for (int i = 0; i < 20; ++i) {
        Task t = task("big-" + std::to_string(i));
        t.spec.payload = std::string(4000, 'x');
        j->put(t);
    }
    const auto failed = j->commit();
    REQUIRE_FALSE(failed.ok());
    REQUIRE(failed.error().code == "journal_unavailable");
    REQUIRE_THAT(failed.error().message, Catch::Contains("full"));
    REQUIRE(j->staged() == 20);
    REQUIRE(j->load().value().size() == 1);  // the failed transaction left nothing behind
    REQUIRE(j->stats().failures == 1);

    Task newer = task("big-0", TaskState::running);  // changed while the batch waited
    j->put(newer);
    REQUIRE(j->limit_pages(100000).ok());  // space again
    REQUIRE(j->commit().ok());
    REQUIRE(j->load().value().size() == 21);
    REQUIRE(j->count_rows().value() == 21);
    const auto tasks = j->load().value();
    REQUIRE(std::find_if(tasks.begin(), tasks.end(), [](const Task& t) {
                return t.spec.id == "big-0";
            })->state == TaskState::running);
}

TEST_CASE("a file that is not a journal is refused with what to do") {
    TempDir d;
    {
        std::ofstream f(d.path + "/tasks.db");
        f << std::string(8192, 'G');
    }
    const auto j = Journal::open(d.path);
    REQUIRE_FALSE(j.ok());
    REQUIRE_THAT(j.error().message, Catch::Contains("move it away"));
}

TEST_CASE("a journal from a newer version is refused, not guessed at") {
    TempDir d;
    REQUIRE(Journal::open(d.path).ok());
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((d.path + "/tasks.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    const auto j = Journal::open(d.path);
    REQUIRE_FALSE(j.ok());
    REQUIRE_THAT(j.error().message, Catch::Contains("newer"));
}

TEST_CASE("a second journal on the same data dir is refused while the first is open") {
    TempDir d;
    auto first = Journal::open(d.path);
    REQUIRE(first.ok());
    const auto second = Journal::open(d.path);
    REQUIRE_FALSE(second.ok());
    REQUIRE_THAT(second.error().message, Catch::Contains("in use by another process"));
    first->reset();  // closed: the data dir is free again
    REQUIRE(Journal::open(d.path).ok());
}

TEST_CASE("a data dir that cannot be made is an error naming it") {
    const auto j = Journal::open("/dev/null/chorus");
    REQUIRE_FALSE(j.ok());
    REQUIRE_THAT(j.error().message, Catch::Contains("/dev/null/chorus"));
}

TEST_CASE(
    "the writer commits what is staged and says up to which change, and waits after a failure") {
    TempDir d;
    std::shared_ptr<Journal> j = std::move(Journal::open(d.path).value());
    chorus::test::TestLoop loop;
    std::vector<std::pair<uint64_t, bool>> outcomes;
    JournalWriter w(loop.get(), j,
                    [&](uint64_t upto, const Status& st) { outcomes.emplace_back(upto, st.ok()); });
    j->put(task("a"));
    const uint64_t b = j->put(task("b"));
    w.wake();
    REQUIRE(loop.run_until([&] { return !outcomes.empty() && !w.busy(); }));
    REQUIRE(outcomes.back() == std::pair<uint64_t, bool>{b, true});
    REQUIRE(j->load().value().size() == 2);

    // A failed commit: reported, and nothing is tried again until resume().
    REQUIRE(j->limit_pages(1).ok());
    Task big = task("big");
    big.spec.payload = std::string(20'000, 'x');
    const uint64_t c = j->put(big);
    w.wake();
    REQUIRE(loop.run_until([&] { return outcomes.size() == 2 && !w.busy(); }));
    REQUIRE(outcomes.back() == std::pair<uint64_t, bool>{c, false});
    // Paused: a wake waits for resume(), though a commit would succeed now. Once the writer
    // has seen the wake and gone back to waiting, nothing was written or reported.
    REQUIRE(j->limit_pages(100000).ok());
    const uint64_t waits = w.waits();
    w.wake();
    REQUIRE(loop.run_until([&] { return w.waits() > waits; }));
    REQUIRE(outcomes.size() == 2);
    REQUIRE(j->load().value().size() == 2);
    w.resume();
    REQUIRE(loop.run_until([&] { return outcomes.size() == 3 && !w.busy(); }));
    REQUIRE(outcomes.back().second);
    REQUIRE(j->load().value().size() == 3);  // the staged record was kept, and written now
}

TEST_CASE("the data dir is the agent user's alone, and so is the journal") {
    TempDir d;
    namespace fs = std::filesystem;
    const std::string dir = d.path + "/new/data";
    {
        auto j = Journal::open(dir);
        REQUIRE(j.ok());
        (*j)->put(task("a"));
        REQUIRE((*j)->commit().ok());
    }
    const auto mode = [](const std::string& p) {
        return fs::status(p).permissions() & fs::perms::all;
    };
    REQUIRE(mode(dir) == fs::perms::owner_all);
    REQUIRE(mode(dir + "/tasks.db") == (fs::perms::owner_read | fs::perms::owner_write));
    // A file an older build left readable to all is narrowed when it is opened.
    fs::permissions(dir + "/tasks.db", fs::perms::all, fs::perm_options::replace);
    REQUIRE(Journal::open(dir).ok());
    REQUIRE(mode(dir + "/tasks.db") == (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("a probe writes and removes a row, so a failed journal learns it can write again") {
    TempDir d;
    auto j = Journal::open(d.path);
    REQUIRE(j.ok());
    (*j)->put(task("a"));
    REQUIRE((*j)->commit().ok());
    const auto commits = (*j)->stats().commits;
    REQUIRE((*j)->limit_pages(1).ok());
    (*j)->probe();
    REQUIRE_FALSE((*j)->commit().ok());  // no page to write it to
    REQUIRE((*j)->limit_pages(100000).ok());
    (*j)->probe();
    REQUIRE((*j)->commit().ok());
    REQUIRE((*j)->stats().commits == commits + 1);
    REQUIRE((*j)->count_rows().value() == 1);  // the probe left nothing behind
    REQUIRE((*j)->load().value().size() == 1);
}
