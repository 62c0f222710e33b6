#include "daemon/journal.hpp"

#include <catch2/catch.hpp>

#include "daemon/temp_dir.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace chorus;
using chorus::test::TempDir;
using namespace chorus::daemon;

namespace {

Task task(const std::string& id, TaskState state = TaskState::queued) {
    Task t;
    t.spec = TaskSpec{id, "key-" + id, "exec", R"({"n":1})", milliseconds(1500)};
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

    REQUIRE(j->limit_pages(100000).ok());  // space again
    REQUIRE(j->commit().ok());
    REQUIRE(j->load().value().size() == 21);
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

TEST_CASE("a data dir that cannot be made is an error naming it") {
    const auto j = Journal::open("/dev/null/chorus");
    REQUIRE_FALSE(j.ok());
    REQUIRE_THAT(j.error().message, Catch::Contains("/dev/null/chorus"));
}
