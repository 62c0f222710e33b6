#include "daemon/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace chorus::daemon {

Status make_data_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool existed = fs::exists(dir, ec);
    fs::create_directories(dir, ec);
    if (!ec && !existed) fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) {
        return Error{"data_dir",
                     fmt::format("cannot create the data dir {}: {}", dir, ec.message())};
    }
    return Ok{};
}

Result<std::optional<std::string>> read_small_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT) return std::optional<std::string>{};
        return Error{"unreadable", fmt::format("cannot read {}: {}", path, std::strerror(errno))};
    }
    std::stringstream text;
    text << in.rdbuf();
    return std::optional<std::string>(text.str());
}

Status replace_file(const std::string& path, std::string_view text, const std::string& code) {
    const auto io_error = [&](std::string_view what, const std::string& file) {
        return Error{code, fmt::format("{} {}: {}", what, file, std::strerror(errno))};
    };
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    if (auto st = make_data_dir(dir); !st) return Error{code, st.error().message};
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return io_error("cannot create", tmp);
    ::fchmod(fd, 0600);  // a leftover temporary file keeps its mode through O_CREAT
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const bool synced = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) {
        const Error e = io_error("cannot write", tmp);
        ::unlink(tmp.c_str());
        return e;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error("cannot replace", path);
    // The rename itself is kept only once the folder is synced.
    if (const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
        ::fsync(d);
        ::close(d);
    }
    return Ok{};
}

}  // namespace chorus::daemon
