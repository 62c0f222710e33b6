#include "daemon/settings.hpp"

#include "daemon/temp_dir.hpp"
#include "net/endpoint.hpp"

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <catch2/catch.hpp>

using namespace chorus;
using namespace chorus::daemon;

namespace {
Settings valid() {
    Settings s;
    s.name = "node-1";
    s.bind = "127.0.0.1:7900";
    return s;
}
}  // namespace

TEST_CASE("valid settings become agent options") {
    Settings s = valid();
    s.seeds = {"127.0.0.1:7901", "[::1]:7902", "seed.example:7900"};
    s.tags = {{"role", "db"}};
    s.profile = "wan";
    auto o = to_agent_options(s);
    REQUIRE(o.ok());
    REQUIRE(o->identity.name == "node-1");
    REQUIRE(o->seeds ==
            std::vector<std::string>{"127.0.0.1:7901", "[::1]:7902", "seed.example:7900"});
    // The operator's tag, and the agent's own: the handlers it has.
    REQUIRE(o->identity.tags == Tags{{"role", "db"}, {"chorus.handlers", "echo,sleep"}});
    REQUIRE(o->config.probe_interval == Config::wan().probe_interval);
}

TEST_CASE("the API's address may be given as a URL, as clients take it") {
    for (const char* text : {"127.0.0.1:7981", "http://127.0.0.1:7981", "http://127.0.0.1:7981/"}) {
        Settings s = valid();
        s.http = text;
        INFO(text);
        auto o = to_agent_options(s);
        REQUIRE(o.ok());
        CHECK(o->identity.http == "127.0.0.1:7981");
        CHECK(api_address(s) == "127.0.0.1:7981");
    }
    CHECK(net::split_http_url("https://[::1]:7980//").scheme == "https");
    CHECK(net::split_http_url("https://[::1]:7980//").address == "[::1]:7980");
    CHECK(net::split_http_url("localhost:7980").scheme.empty());
    CHECK(net::split_http_url("httpx://a:1").address == "httpx://a:1");  // not a scheme we know
}

TEST_CASE("every refused setting names its field") {
    struct Row {
        const char* field;
        std::function<void(Settings&)> breaks;
    };
    const Row rows[] = {
        {"name", [](Settings& s) { s.name = ""; }},
        {"name", [](Settings& s) { s.name = std::string(300, 'n'); }},
        {"bind", [](Settings& s) { s.bind = "localhost"; }},
        {"advertise", [](Settings& s) { s.advertise = "10.0.0.1"; }},
        {"http", [](Settings& s) { s.http = ":80"; }},
        {"http", [](Settings& s) { s.http = "https://127.0.0.1:7980"; }},  // no certificate
        {"http",
         [](Settings& s) {
             s.http = "http://127.0.0.1:7980";
             s.tls_cert = "/etc/chorus/tls.pem";
         }},
        {"http", [](Settings& s) { s.http = "ftp://127.0.0.1:7980"; }},
        {"seed", [](Settings& s) { s.seeds = {"127.0.0.1:99999"}; }},
        {"seed", [](Settings& s) { s.seeds = {"seed.example"}; }},
        {"profile", [](Settings& s) { s.profile = "moon"; }},
        {"cluster", [](Settings& s) { s.cluster = ""; }},
        {"log_level", [](Settings& s) { s.log_level = "loud"; }},
        {"log_format", [](Settings& s) { s.log_format = "xml"; }},
        {"tag",
         [](Settings& s) {
             for (int i = 0; i < 40; ++i)
                 s.tags["k" + std::to_string(i)] = "v";
         }},
    };
    for (const Row& r : rows) {
        Settings s = valid();
        r.breaks(s);
        auto o = to_agent_options(s);
        INFO(r.field);
        REQUIRE_FALSE(o.ok());
        REQUIRE_THAT(o.error().message, Catch::StartsWith(std::string(r.field) + ":"));
    }
}

TEST_CASE("a config key may be spelled as its flag is") {
    Settings s = valid();
    REQUIRE(apply_config_json(s, R"({"seed": ["127.0.0.1:1"], "tag": {"zone": "b"},
                                     "retry-join": 4, "http-name": ["chorus.internal"]})")
                .ok());
    CHECK(s.seeds == std::vector<std::string>{"127.0.0.1:1"});
    CHECK(s.tags.at("zone") == "b");
    CHECK(s.retry_join == 4);
    CHECK(s.http_names == std::vector<std::string>{"chorus.internal"});
    // Each key and flag the table holds is taken in the file, in both spellings.
    for (const SettingSpec& spec : agent_settings()) {
        if (spec.flag.empty()) continue;
        const std::string as_flag = std::string(spec.flag.substr(2));
        Settings t = valid();
        const auto st = apply_config_json(t, fmt::format(R"({{"{}": null}})", as_flag));
        INFO(as_flag);
        REQUIRE_FALSE(st.ok());
        CHECK_THAT(st.error().message, !Catch::Contains("unknown setting"));
    }
}

TEST_CASE("a config file sets what it names and refuses what it does not know") {
    Settings s = valid();
    REQUIRE(apply_config_json(
                s, R"({"name": "from-file", "seeds": ["127.0.0.1:1"], "tags": {"zone": "a"},
                                     "retry_join": 3, "log_format": "json"})")
                .ok());
    REQUIRE(s.name == "from-file");
    REQUIRE(s.seeds.size() == 1);
    REQUIRE(s.tags.at("zone") == "a");
    REQUIRE(s.retry_join == 3);
    REQUIRE(s.log_format == "json");

    const auto refused = [](const char* text) {
        Settings t = valid();
        auto st = apply_config_json(t, text);
        REQUIRE_FALSE(st.ok());
        return st.error().message;
    };
    REQUIRE_THAT(refused(R"({"nmae": "x"})"),
                 Catch::StartsWith("nmae: unknown setting (did you mean name?"));
    REQUIRE_THAT(refused(R"({"tasks": {"capcity": 4}})"),
                 Catch::StartsWith("tasks.capcity: unknown setting (did you mean capacity?"));
    REQUIRE_THAT(refused(R"({"tasks.capacity": 4})"), Catch::StartsWith("tasks.capacity: unknown"));
    REQUIRE_THAT(refused(R"({"retry_join": "three"})"), Catch::StartsWith("retry_join: must be"));
    REQUIRE_THAT(refused(R"({"seeds": "127.0.0.1:1"})"), Catch::StartsWith("seeds: must be"));
    REQUIRE_THAT(refused(R"([1, 2])"), Catch::StartsWith("config file: must hold a JSON object"));
    REQUIRE_THAT(refused("{not json"), Catch::StartsWith("config file: not valid JSON"));
    // Hostile files are refused with a message, never an exception or an overflow.
    REQUIRE_THAT(refused(R"({"retry_join": 1e999})"),
                 Catch::StartsWith("config file: not valid JSON"));
    REQUIRE_THAT(refused(std::string(100'000, '[').c_str()),
                 Catch::StartsWith("config file: JSON nested deeper than"));
    REQUIRE_THAT(refused(R"({"retry_join": 4294967296})"),
                 Catch::StartsWith("retry_join: must be at most"));
    REQUIRE_THAT(refused(R"({"leave_timeout_ms": 18446744073709551615})"),
                 Catch::StartsWith("leave_timeout_ms: must be at most"));
    REQUIRE_THAT(refused(R"({"tasks": {"results_ttl_s": 9223372036854775807}})"),
                 Catch::StartsWith("tasks.results_ttl_s: must be at most"));
    REQUIRE_THAT(refused(R"({"tasks": {"payload_bytes_max": 18446744073709551615}})"),
                 Catch::StartsWith("tasks.payload_bytes_max: must be at most"));
}

TEST_CASE("names, the cluster and tags must be clean text") {
    for (const auto& [field, breaks] :
         std::vector<std::pair<std::string, std::function<void(Settings&)>>>{
             {"name", [](Settings& s) { s.name = "evil\nname"; }},
             {"name", [](Settings& s) { s.name = "n\xff"; }},
             {"cluster", [](Settings& s) { s.cluster = "c\x1b"; }},
             {"tag", [](Settings& s) { s.tags["k"] = "v\r"; }},
             {"tag", [](Settings& s) { s.tags[""] = "v"; }},
         }) {
        Settings s = valid();
        breaks(s);
        INFO(field);
        auto o = to_agent_options(s);
        REQUIRE_FALSE(o.ok());
        REQUIRE_THAT(o.error().message, Catch::StartsWith(field + ":"));
    }
    Settings s;
    REQUIRE_FALSE(apply_config_json(s, R"({"handlers": {"bad\u0007": {"builtin": "echo"}}})").ok());
}

TEST_CASE("tags come as key=value") {
    Settings s = valid();
    REQUIRE(add_tag(s, "role=db").ok());
    REQUIRE(add_tag(s, "empty=").ok());
    REQUIRE(s.tags.at("empty").empty());
    REQUIRE_FALSE(add_tag(s, "novalue").ok());
    REQUIRE_FALSE(add_tag(s, "=v").ok());
}

TEST_CASE("the tasks and handlers sections of a config file are read and checked") {
    Settings s;
    REQUIRE(apply_config_json(s, R"({"data_dir": "/var/lib/chorus",
        "tasks": {"capacity": 4, "queue_max": 9, "candidates": 2, "replicas": 1, "balance_factor": 1.25,
                  "copy_check_ms": 5000},
        "handlers": {"resize": {"exec": ["/bin/cat", "-"]}, "hook": {"http": "http://127.0.0.1:8080/x"}}})")
                .ok());
    REQUIRE(s.tasks.data_dir == "/var/lib/chorus");
    REQUIRE(s.tasks.limits.capacity == 4);
    REQUIRE(s.tasks.limits.queue_max == 9);
    REQUIRE(s.tasks.candidates == 2);
    REQUIRE(s.tasks.task_replicas == 1);
    REQUIRE(s.tasks.balance_factor == 1.25);
    REQUIRE(s.tasks.copy_check == seconds(5));
    REQUIRE(s.tasks.handlers.at("resize").argv == std::vector<std::string>{"/bin/cat", "-"});
    REQUIRE(s.tasks.handlers.contains("echo"));  // the built-ins stay

    struct Bad {
        const char* json;
        const char* names;
    };
    for (const Bad& b : {Bad{R"({"tasks": {"capacity": "many"}})", "tasks.capacity"},
                         Bad{R"({"tasks": {"capcity": 4}})", "tasks.capcity"},
                         Bad{R"({"handlers": {"x": {"exec": []}}})", "handlers.x.exec"},
                         Bad{R"({"handlers": {"x": {"shell": "rm -rf /"}}})", "handlers.x"},
                         Bad{R"({"handlers": {"x": {"http": "localhost:80"}}})", "handlers.x"},
                         Bad{R"({"data_dir": ""})", "data_dir"}}) {
        Settings t;
        const auto st = apply_config_json(t, b.json);
        INFO(b.json);
        REQUIRE_FALSE(st.ok());
        REQUIRE_THAT(st.error().message, Catch::StartsWith(b.names));
    }
    Settings r;
    r.name = "n";
    r.tasks.task_replicas = 3;
    REQUIRE_THAT(to_agent_options(r).error().message, Catch::StartsWith("tasks.replicas:"));
    r.tasks.task_replicas = 2;
    r.tasks.copy_check = Duration::zero();
    REQUIRE_THAT(to_agent_options(r).error().message, Catch::StartsWith("tasks.copy_check_ms:"));
    // Every task setting the core checks is named as the file names it.
    r = Settings{};
    r.name = "n";
    r.tasks.limits.capacity = 0;
    REQUIRE_THAT(to_agent_options(r).error().message, Catch::StartsWith("tasks.capacity:"));
}

TEST_CASE(
    "a handler's relative paths are the config file's neighbours, and a missing program is "
    "refused at start") {
    test::TempDir d;
    std::filesystem::create_directories(d.path + "/handlers");
    std::filesystem::create_directories(d.path + "/work");
    const std::string script = d.path + "/handlers/resize.sh";
    std::ofstream(script) << "#!/bin/sh\ncat\n";
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    std::ofstream(d.path + "/handlers/notes.txt") << "not a program\n";

    Settings s;
    REQUIRE(apply_config_json(s, R"({"handlers": {
        "resize": {"exec": ["handlers/resize.sh", "-"], "dir": "work"},
        "up": {"exec": ["./handlers/../handlers/resize.sh"]},
        "shell": {"exec": ["sh", "-c", "true"]}}})",
                              d.path)
                .ok());
    CHECK(s.tasks.handlers.at("resize").argv ==
          std::vector<std::string>{d.path + "/handlers/resize.sh", "-"});
    CHECK(s.tasks.handlers.at("resize").dir == d.path + "/work");
    CHECK(s.tasks.handlers.at("up").argv[0] == d.path + "/handlers/resize.sh");
    CHECK(s.tasks.handlers.at("shell").argv[0] == "sh");  // a bare name: found on PATH

    const auto refused = [&](const std::string& program) {
        Settings t;
        const auto st = apply_config_json(
            t, fmt::format(R"({{"handlers": {{"x": {{"exec": ["{}"]}}}}}})", program), d.path);
        REQUIRE_FALSE(st.ok());
        return st.error().message;
    };
    CHECK_THAT(refused("handlers/gone.sh"), Catch::StartsWith("handlers.x: exec: " + d.path +
                                                              "/handlers/gone.sh does not exist"));
    CHECK_THAT(refused("handlers/notes.txt"), Catch::Contains("is not an executable file"));
    CHECK_THAT(refused("handlers"), Catch::Contains("is not on PATH"));  // no slash: a name
    CHECK_THAT(refused("no-such-program-anywhere"), Catch::Contains("is not on PATH"));
}

TEST_CASE("tags that would not fit in a packet beside the node's name are refused") {
    // Each within the tag limits (32 tags, 512 bytes in all), but the node's own announcement
    // would take more than a packet: found by fuzzing the config loader.
    Settings s = valid();
    for (int i = 0; i < 31; ++i)  // and the agent's own, its handlers
        s.tags[fmt::format("k{:02}", i)] = std::string(12, 'v');
    auto o = to_agent_options(s);
    REQUIRE_FALSE(o.ok());
    REQUIRE_THAT(o.error().message, Catch::StartsWith("tag:") && Catch::Contains("packet"));
    s.tags.clear();
    for (int i = 0; i < 8; ++i)
        s.tags[fmt::format("k{:02}", i)] = std::string(13, 'v');
    REQUIRE(to_agent_options(s).ok());
}

TEST_CASE("every setting is declared once: a unique key and flag, help, and a reachable field") {
    std::set<std::string_view> keys, flags;
    for (const SettingSpec& spec : agent_settings()) {
        CAPTURE(spec.key);
        REQUIRE(keys.insert(spec.key).second);
        if (!spec.flag.empty()) REQUIRE(flags.insert(spec.flag).second);
        REQUIRE_FALSE(spec.help.empty());
        REQUIRE(find_setting(spec.key) == &spec);
    }
    REQUIRE(find_setting("tasks.nope") == nullptr);
}

TEST_CASE("a flag sets its field as the same key in the config file does") {
    // Each row: a setting, its value as a flag gives it, and as the config file does.
    struct Row {
        const char* key;
        std::vector<std::string> flag;
        const char* json;
    };
    const Row rows[] = {
        {"name", {"n7"}, R"({"name": "n7"})"},
        {"seeds", {"127.0.0.1:1", "h:2"}, R"({"seeds": ["127.0.0.1:1", "h:2"]})"},
        {"tags", {"role=db", "zone=a"}, R"({"tags": {"role": "db", "zone": "a"}})"},
        {"retry_join", {"3"}, R"({"retry_join": 3})"},
        {"leave_timeout_ms", {"2500"}, R"({"leave_timeout_ms": 2500})"},
        {"data_dir", {"/d"}, R"({"data_dir": "/d"})"},
    };
    for (const Row& r : rows) {
        CAPTURE(r.key);
        const SettingSpec* spec = find_setting(r.key);
        REQUIRE(spec != nullptr);
        REQUIRE_FALSE(spec->flag.empty());
        Settings by_flag = valid(), by_file = valid();
        REQUIRE(apply_flag(by_flag, *spec, r.flag).ok());
        REQUIRE(apply_config_json(by_file, r.json).ok());
        REQUIRE(by_flag.name == by_file.name);
        REQUIRE(by_flag.seeds == by_file.seeds);
        REQUIRE(by_flag.tags == by_file.tags);
        REQUIRE(by_flag.retry_join == by_file.retry_join);
        REQUIRE(by_flag.leave_timeout == by_file.leave_timeout);
        REQUIRE(by_flag.tasks.data_dir == by_file.tasks.data_dir);
    }
    Settings s = valid();
    const auto st = apply_flag(s, *find_setting("retry_join"), {"three"});
    REQUIRE_FALSE(st.ok());
    REQUIRE_THAT(st.error().message, Catch::StartsWith("--retry-join:"));
}

TEST_CASE("an unknown key's error lists the known ones of its section, from the table") {
    Settings s;
    const auto st = apply_config_json(s, R"({"tasks": {"capcity": 4}})");
    REQUIRE_FALSE(st.ok());
    for (const SettingSpec& spec : agent_settings()) {
        if (!spec.key.starts_with("tasks.")) continue;
        REQUIRE_THAT(st.error().message, Catch::Contains(std::string(spec.key.substr(6))));
    }
    REQUIRE(default_text(*find_setting("tasks.capacity")) == std::to_string(TaskLimits{}.capacity));
    REQUIRE(default_text(*find_setting("tasks.results_ttl_s")) == "3600");
}

TEST_CASE(
    "the encrypt setting takes a key from chorus keygen, and the steps of a move to encryption") {
    const std::string key = net::key_to_base64(net::new_key());
    Settings s = valid();
    REQUIRE_FALSE(to_agent_options(s)->keyring.has_value());  // no key: everything in clear
    s.encrypt_verify_incoming = false;  // a switch without a key means nothing: refused
    REQUIRE_THAT(to_agent_options(s).error().message,
                 Catch::StartsWith("encrypt_verify_incoming:"));
    s.encrypt_verify_incoming = true;

    REQUIRE(apply_flag(s, *find_setting("encrypt"), {key}).ok());
    auto o = to_agent_options(s);
    REQUIRE(o.ok());
    REQUIRE(o->keyring.has_value());
    REQUIRE(net::key_to_base64(o->keyring->primary()) == key);
    REQUIRE(o->envelope.incoming);
    REQUIRE(o->envelope.outgoing);

    // The file says the same with booleans; a flag says true or false.
    Settings f = valid();
    REQUIRE(apply_config_json(f, fmt::format(R"({{"encrypt": "{}", "encrypt_verify_incoming": false,
                                                 "encrypt_verify_outgoing": false}})",
                                             key))
                .ok());
    o = to_agent_options(f);
    REQUIRE(o.ok());
    REQUIRE_FALSE(o->envelope.incoming);
    REQUIRE_FALSE(o->envelope.outgoing);
    REQUIRE(apply_flag(f, *find_setting("encrypt_verify_outgoing"), {"true"}).ok());
    REQUIRE(to_agent_options(f)->envelope.outgoing);
    const auto not_bool = apply_flag(f, *find_setting("encrypt_verify_outgoing"), {"yes"});
    REQUIRE_THAT(not_bool.error().message, Catch::StartsWith("--encrypt-verify-outgoing:"));
    REQUIRE_FALSE(apply_config_json(f, R"({"encrypt_verify_incoming": "false"})").ok());

    SECTION("refusing clear messages while sending them is refused") {
        f.encrypt_verify_incoming = true;
        f.encrypt_verify_outgoing = false;
        auto r = to_agent_options(f);
        REQUIRE_FALSE(r.ok());
        REQUIRE_THAT(r.error().message, Catch::StartsWith("encrypt_verify_incoming:"));
    }
    SECTION("a key that is not 32 bytes of base64 is refused, saying how to make one") {
        for (const std::string& bad :
             std::vector<std::string>{"short", std::string(44, 'A'), key.substr(1)}) {
            Settings b = valid();
            b.encrypt = bad;
            auto r = to_agent_options(b);
            CAPTURE(bad);
            REQUIRE_FALSE(r.ok());
            REQUIRE_THAT(r.error().message,
                         Catch::StartsWith("encrypt:") && Catch::Contains("chorus keygen"));
        }
    }
}

TEST_CASE("an exec handler's least-privilege fields are read and checked") {
    Settings s;
    s.name = "n";
    REQUIRE(apply_config_json(s, R"({"handlers": {"resize": {
        "exec": ["/bin/cat", "-"], "user": "nobody", "group": "nogroup",
        "env": ["PATH", "HOME"], "dir": "/tmp",
        "limits": {"cpu_s": 30, "as_bytes": 536870912, "nofile": 256, "nproc": 64}}}})")
                .ok());
    const HandlerSpec& h = s.tasks.handlers.at("resize");
    CHECK(h.uid == resolve_user("nobody").value());
    CHECK(h.gid == resolve_group("nogroup").value());
    CHECK(h.env == std::vector<std::string>{"PATH", "HOME"});
    CHECK(h.dir == "/tmp");
    CHECK(h.limits.cpu_s == 30);
    CHECK(h.limits.as_bytes == 536870912);
    CHECK(h.limits.nofile == 256);
    CHECK(h.limits.nproc == 64);
    // A user and no group: the user's own group.
    Settings u;
    REQUIRE(apply_config_json(u, R"({"handlers": {"j": {"exec": ["/bin/true"], "user": "root"}}})")
                .ok());
    CHECK(u.tasks.handlers.at("j").gid == 0u);
    // A handler that names nobody's env runs with the short default.
    Settings d;
    REQUIRE(apply_config_json(d, R"({"handlers": {"j": {"exec": ["/bin/true"]}}})").ok());
    CHECK(d.tasks.handlers.at("j").env == default_exec_env());

    struct Bad {
        const char* json;
        const char* names;
    };
    for (const Bad& b :
         {Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "user": "no-such-user-here"}}})",
              "handlers.x.user"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "group": "no-such-group"}}})",
              "handlers.x.group"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "user": ""}}})", "handlers.x.user"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "env": "PATH"}}})", "handlers.x.env"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "env": ["A=B"]}}})", "handlers.x.env"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "dir": "/no/such/dir"}}})",
              "handlers.x"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "limits": {"cpu": 1}}}})",
              "handlers.x.limits.cpu"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "limits": {"nofile": 0}}}})",
              "handlers.x.limits.nofile"},
          Bad{R"({"handlers": {"x": {"exec": ["/bin/true"], "shell": true}}})", "handlers.x.shell"},
          Bad{R"({"handlers": {"x": {"http": "http://127.0.0.1:1/", "user": "root"}}})",
              "handlers.x"}}) {
        Settings t;
        const auto st = apply_config_json(t, b.json);
        INFO(b.json);
        REQUIRE_FALSE(st.ok());
        CHECK_THAT(st.error().message, Catch::StartsWith(b.names));
    }
}

TEST_CASE("an agent running as root refuses exec handlers that do not name their user") {
    Settings s;
    s.name = "n";
    REQUIRE(apply_config_json(s, R"({"handlers": {"j": {"exec": ["/bin/true"]}}})").ok());
    const auto refused = to_agent_options(s, 0);
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().message, Catch::Contains("handlers.j") && Catch::Contains("root") &&
                                            Catch::Contains("\"user\""));
    CHECK(to_agent_options(s, 1000).ok());  // not root: it runs as the agent's user
    Settings named;
    named.name = "n";
    REQUIRE(
        apply_config_json(named, R"({"handlers": {"j": {"exec": ["/bin/true"], "user": "root"}}})")
            .ok());
    CHECK(to_agent_options(named, 0).ok());  // root, said explicitly
}

TEST_CASE("a user with no entry in the user database needs a group named too") {
    Settings s;
    const auto refused =
        apply_config_json(s, R"({"handlers": {"j": {"exec": ["/bin/true"], "user": "4242"}}})");
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().message,
               Catch::StartsWith("handlers.j.user") && Catch::Contains("group"));
    Settings t;
    REQUIRE(apply_config_json(
        t, R"({"handlers": {"j": {"exec": ["/bin/true"], "user": "4242", "group": "4242"}}})"));
    CHECK(t.tasks.handlers.at("j").gid == 4242u);
}

TEST_CASE("tags under the agent's prefix and handler names with commas are refused") {
    Settings s = valid();
    s.tags = {{"chorus.drain", "1"}};
    auto o = to_agent_options(s);
    REQUIRE_FALSE(o.ok());
    REQUIRE_THAT(o.error().message,
                 Catch::StartsWith("tag: chorus.drain: names starting with chorus. are the "
                                   "agent's own"));

    // check_handler, at the config's reading or when the options are made.
    Settings t = valid();
    const auto st = apply_config_json(t, R"({"handlers": {"a,b": {"builtin": "echo"}}})");
    std::string why = st.ok() ? "" : st.error().message;
    if (st.ok()) {
        auto opts = to_agent_options(t);
        REQUIRE_FALSE(opts.ok());
        why = opts.error().message;
    }
    REQUIRE_THAT(why, Catch::Contains("a,b") && Catch::Contains("comma"));
}
