// The small files an agent keeps in its data dir (the keyring, the tags set at run time): read
// whole, and replaced whole so that a crash leaves the old file or the new one, never half of
// either.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace chorus::daemon {

// Creates the agent's --data-dir, parents too (as an operator expects of a folder under
// /var/lib that is not there yet); one it creates is the agent user's alone (0700): it holds
// every task's payload and result, and the keyring.
Status make_data_dir(const std::string& dir);

// The file's text; nullopt when there is no such file. Errors name the file and why.
Result<std::optional<std::string>> read_small_file(const std::string& path);

// Writes `text` to a temporary file beside `path` (mode 0600), syncs it, renames it over
// `path` and syncs the folder, which is created as make_data_dir does if it is missing. Errors
// carry `code` and name the file.
Status replace_file(const std::string& path, std::string_view text, const std::string& code);

}  // namespace chorus::daemon
